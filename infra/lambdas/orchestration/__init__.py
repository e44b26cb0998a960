"""Lambda code for ingestion, batching and dispatch (boto3 only: the Lambda runtime provides it)."""
