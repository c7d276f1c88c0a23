"""Detection metrics, reports, dataset readers and the evaluate, bench and stress protocols."""
