"""I/O adapters: S3 and local files, the CSV source, Delta (delta-spark), DynamoDB, the lake
layout, results, the lake lease.
"""
