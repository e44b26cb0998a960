-- validated_products: Product catalogue. Valid rows, one per id (merged batch by batch).
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   id                bigint
--   sku               string
--   cost              decimal(12,2)
--   category          string
--   name              string
--   brand             string
--   retail_price      decimal(12,2)
--   department        string
--   _warnings         array<string>
--   _row_hash         bigint
--   _batch_id         string
--   _processing_date  date
--   _source_file      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`validated_products`
LOCATION 's3://example-bucket/lake/validated/products'
TBLPROPERTIES ('table_type' = 'DELTA');

-- quarantine_products: Product catalogue. Quarantined rows as received (text), with reason codes; one slice per batch.
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   id                string
--   sku               string
--   cost              string
--   category          string
--   name              string
--   brand             string
--   retail_price      string
--   department        string
--   _corrupt_record   string
--   _reasons          array<string>
--   _copies           bigint
--   _batch_id         string
--   _processing_date  date
--   _source_file      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`quarantine_products`
LOCATION 's3://example-bucket/lake/quarantine/products'
TBLPROPERTIES ('table_type' = 'DELTA');

-- validated_orders: One row per order. Valid rows, one per order_id (merged batch by batch).
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   order_id          bigint
--   user_id           bigint
--   status            string
--   created_at        timestamp
--   returned_at       timestamp
--   shipped_at        timestamp
--   delivered_at      timestamp
--   num_of_item       int
--   _warnings         array<string>
--   _row_hash         bigint
--   _batch_id         string
--   _processing_date  date
--   _source_file      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`validated_orders`
LOCATION 's3://example-bucket/lake/validated/orders'
TBLPROPERTIES ('table_type' = 'DELTA');

-- quarantine_orders: One row per order. Quarantined rows as received (text), with reason codes; one slice per batch.
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   order_id          string
--   user_id           string
--   status            string
--   created_at        string
--   returned_at       string
--   shipped_at        string
--   delivered_at      string
--   num_of_item       string
--   _corrupt_record   string
--   _reasons          array<string>
--   _copies           bigint
--   _batch_id         string
--   _processing_date  date
--   _source_file      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`quarantine_orders`
LOCATION 's3://example-bucket/lake/quarantine/orders'
TBLPROPERTIES ('table_type' = 'DELTA');

-- validated_order_items: One row per item of an order. Valid rows, one per id (merged batch by batch).
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   id                bigint
--   order_id          bigint
--   user_id           bigint
--   product_id        bigint
--   status            string
--   created_at        timestamp
--   shipped_at        timestamp
--   delivered_at      timestamp
--   returned_at       timestamp
--   sale_price        decimal(12,2)
--   _warnings         array<string>
--   _row_hash         bigint
--   _batch_id         string
--   _processing_date  date
--   _source_file      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`validated_order_items`
LOCATION 's3://example-bucket/lake/validated/order_items'
TBLPROPERTIES ('table_type' = 'DELTA');

-- quarantine_order_items: One row per item of an order. Quarantined rows as received (text), with reason codes; one slice per batch.
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   id                string
--   order_id          string
--   user_id           string
--   product_id        string
--   status            string
--   created_at        string
--   shipped_at        string
--   delivered_at      string
--   returned_at       string
--   sale_price        string
--   _corrupt_record   string
--   _reasons          array<string>
--   _copies           bigint
--   _batch_id         string
--   _processing_date  date
--   _source_file      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`quarantine_order_items`
LOCATION 's3://example-bucket/lake/quarantine/order_items'
TBLPROPERTIES ('table_type' = 'DELTA');

-- kpi_order_daily: Daily order KPIs, one row per order date.
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   order_date        date
--   total_orders      bigint
--   total_revenue     decimal(18,2)
--   net_revenue       decimal(18,2)
--   total_items_sold  bigint
--   return_rate       decimal(6,4)
--   unique_customers  bigint
--   avg_order_value   decimal(18,2)
--   returned_orders   bigint
--   batch_id          string
--   computed_at       string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`kpi_order_daily`
LOCATION 's3://example-bucket/lake/kpi/order_daily'
TBLPROPERTIES ('table_type' = 'DELTA');

-- kpi_category_daily: Daily KPIs per product category and order date.
-- Athena reads a Delta table's columns from its log; they are, from the contract:
--   category         string
--   order_date       date
--   daily_revenue    decimal(18,2)
--   net_revenue      decimal(18,2)
--   orders           bigint
--   items_sold       bigint
--   avg_order_value  decimal(18,2)
--   avg_return_rate  decimal(6,4)
--   returned_items   bigint
--   batch_id         string
--   computed_at      string
CREATE EXTERNAL TABLE IF NOT EXISTS `ecom_lake`.`kpi_category_daily`
LOCATION 's3://example-bucket/lake/kpi/category_daily'
TBLPROPERTIES ('table_type' = 'DELTA');
