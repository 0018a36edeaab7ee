"""Running the fleet: alerts, figures for the report, Prometheus metrics, the report itself and
the operators who may steer the fleet."""
