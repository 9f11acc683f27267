"""The annotate job: Ray Data streams images through the cascade into Parquet tables."""
