"""Where readings and predictions go: JSON lines, MQTT (with a durable spool), HTTP metrics."""
