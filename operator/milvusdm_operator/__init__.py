"""The milvusdm operator: MilvusMigration custom resources run as batch/v1 Jobs (kopf)."""
