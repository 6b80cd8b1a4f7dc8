"""The distributed runtime: Kafka topics, faust-streaming workers, alert state in Redis."""
