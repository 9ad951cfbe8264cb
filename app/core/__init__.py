"""What every feature stands on: settings, the database, time, typed errors, paging, leases, backoff.

Imports nothing of the app."""
