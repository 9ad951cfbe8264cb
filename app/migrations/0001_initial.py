"""Start the migration history: later files add each feature's tables."""


def up(migrator, db):
    pass
