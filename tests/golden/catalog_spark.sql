CREATE TABLE IF NOT EXISTS `ecom_lake`.`validated_products` (
  `id` BIGINT,
  `sku` STRING,
  `cost` DECIMAL(12,2),
  `category` STRING,
  `name` STRING,
  `brand` STRING,
  `retail_price` DECIMAL(12,2),
  `department` STRING,
  `_warnings` ARRAY<STRING>,
  `_row_hash` BIGINT,
  `_batch_id` STRING NOT NULL,
  `_processing_date` DATE NOT NULL,
  `_source_file` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/validated/products'
COMMENT 'Product catalogue. Valid rows, one per id (merged batch by batch).';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`quarantine_products` (
  `id` STRING,
  `sku` STRING,
  `cost` STRING,
  `category` STRING,
  `name` STRING,
  `brand` STRING,
  `retail_price` STRING,
  `department` STRING,
  `_corrupt_record` STRING,
  `_reasons` ARRAY<STRING>,
  `_copies` BIGINT,
  `_batch_id` STRING NOT NULL,
  `_processing_date` DATE NOT NULL,
  `_source_file` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/quarantine/products'
COMMENT 'Product catalogue. Quarantined rows as received (text), with reason codes; one slice per batch.';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`validated_orders` (
  `order_id` BIGINT,
  `user_id` BIGINT,
  `status` STRING,
  `created_at` TIMESTAMP,
  `returned_at` TIMESTAMP,
  `shipped_at` TIMESTAMP,
  `delivered_at` TIMESTAMP,
  `num_of_item` INT,
  `_warnings` ARRAY<STRING>,
  `_row_hash` BIGINT,
  `_batch_id` STRING NOT NULL,
  `_processing_date` DATE NOT NULL,
  `_source_file` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/validated/orders'
COMMENT 'One row per order. Valid rows, one per order_id (merged batch by batch).';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`quarantine_orders` (
  `order_id` STRING,
  `user_id` STRING,
  `status` STRING,
  `created_at` STRING,
  `returned_at` STRING,
  `shipped_at` STRING,
  `delivered_at` STRING,
  `num_of_item` STRING,
  `_corrupt_record` STRING,
  `_reasons` ARRAY<STRING>,
  `_copies` BIGINT,
  `_batch_id` STRING NOT NULL,
  `_processing_date` DATE NOT NULL,
  `_source_file` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/quarantine/orders'
COMMENT 'One row per order. Quarantined rows as received (text), with reason codes; one slice per batch.';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`validated_order_items` (
  `id` BIGINT,
  `order_id` BIGINT,
  `user_id` BIGINT,
  `product_id` BIGINT,
  `status` STRING,
  `created_at` TIMESTAMP,
  `shipped_at` TIMESTAMP,
  `delivered_at` TIMESTAMP,
  `returned_at` TIMESTAMP,
  `sale_price` DECIMAL(12,2),
  `_warnings` ARRAY<STRING>,
  `_row_hash` BIGINT,
  `_batch_id` STRING NOT NULL,
  `_processing_date` DATE NOT NULL,
  `_source_file` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/validated/order_items'
COMMENT 'One row per item of an order. Valid rows, one per id (merged batch by batch).';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`quarantine_order_items` (
  `id` STRING,
  `order_id` STRING,
  `user_id` STRING,
  `product_id` STRING,
  `status` STRING,
  `created_at` STRING,
  `shipped_at` STRING,
  `delivered_at` STRING,
  `returned_at` STRING,
  `sale_price` STRING,
  `_corrupt_record` STRING,
  `_reasons` ARRAY<STRING>,
  `_copies` BIGINT,
  `_batch_id` STRING NOT NULL,
  `_processing_date` DATE NOT NULL,
  `_source_file` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/quarantine/order_items'
COMMENT 'One row per item of an order. Quarantined rows as received (text), with reason codes; one slice per batch.';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`kpi_order_daily` (
  `order_date` DATE,
  `total_orders` BIGINT,
  `total_revenue` DECIMAL(18,2),
  `net_revenue` DECIMAL(18,2),
  `total_items_sold` BIGINT,
  `return_rate` DECIMAL(6,4),
  `unique_customers` BIGINT,
  `avg_order_value` DECIMAL(18,2),
  `returned_orders` BIGINT,
  `batch_id` STRING,
  `computed_at` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/kpi/order_daily'
COMMENT 'Daily order KPIs, one row per order date.';

CREATE TABLE IF NOT EXISTS `ecom_lake`.`kpi_category_daily` (
  `category` STRING,
  `order_date` DATE,
  `daily_revenue` DECIMAL(18,2),
  `net_revenue` DECIMAL(18,2),
  `orders` BIGINT,
  `items_sold` BIGINT,
  `avg_order_value` DECIMAL(18,2),
  `avg_return_rate` DECIMAL(6,4),
  `returned_items` BIGINT,
  `batch_id` STRING,
  `computed_at` STRING
)
USING DELTA
LOCATION 's3://example-bucket/lake/kpi/category_daily'
COMMENT 'Daily KPIs per product category and order date.';
