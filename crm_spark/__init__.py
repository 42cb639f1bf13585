"""crm-spark: customer intelligence on Apache Spark and Delta Lake."""
