"""What a paper needs to report: the run card (hardware, software, timings) and result files."""
