"""The application: the `funnel` command line, the demo and the wiring of configuration to the
feature store, the trainers, the service and the jobs."""
