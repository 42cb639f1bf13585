"""The stages: each module holds one stage's ``run(spark, config, run_id)``."""
