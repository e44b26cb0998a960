"""Library code shared by the ecom-pipeline jobs: settings, contracts, rules, I/O."""
