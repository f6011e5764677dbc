import warnings

# The single-run backfill policy and lookback partition mappings are the design's backbone;
# Dagster marks both parameters beta, and the warning would greet every user at every load.
warnings.filterwarnings("ignore", message=r".*`(backfill_policy|allow_nonexistent_upstream_partitions)`.*")
