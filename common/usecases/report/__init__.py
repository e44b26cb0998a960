"""A batch's report, three ways: ``summary`` prints a job's outcome for a terminal, ``page`` renders
the self-contained HTML report and the index of runs, ``publish`` writes them (and the run ledger's
row) beside the result."""
