-- A small shop: users place orders of products. PostgreSQL syntax; plurel_fast
-- parses it (never executes it) and generates a synthetic database of this shape.
CREATE TABLE users (
    user_id     INTEGER PRIMARY KEY,
    country     TEXT NOT NULL,
    tier        VARCHAR(10) CHECK (tier IN ('Free', 'Pro', 'Enterprise')),
    is_verified BOOLEAN NOT NULL,
    signup_date DATE NOT NULL
);

CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    category   TEXT CHECK (category IN ('Books', 'Home & Garden', 'toys')),
    price      NUMERIC(10, 2) NOT NULL,
    in_stock   BOOLEAN
);

CREATE TABLE orders (
    order_id   INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (user_id),
    status     TEXT NOT NULL CHECK (status IN ('placed', 'Shipped', 'delivered ', 'returned')),
    ordered_at TIMESTAMP NOT NULL,
    shipped_at TIMESTAMP,
    total      DOUBLE PRECISION
);

CREATE TABLE order_items (
    item_id    INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity   INTEGER NOT NULL,
    discount   REAL,
    FOREIGN KEY (order_id) REFERENCES orders (order_id),
    FOREIGN KEY (product_id) REFERENCES products (product_id)
);
