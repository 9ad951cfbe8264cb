"""Operations: health, metrics, backups and housekeeping jobs."""
