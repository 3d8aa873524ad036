"""The repository is the database: git plumbing, records, leases, the output cache."""
