"""peewee models, one module per feature; each feature's tables are created by its migration file."""
