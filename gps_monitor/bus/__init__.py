"""The transport layer: how the long-running workers receive, publish and acknowledge.

One concept per module:

- :mod:`~gps_monitor.bus.base`: :class:`Delivery`, the :class:`Source` / :class:`Sink` /
  :class:`Transport` protocols every transport implements, the ownership-change callback.
- :mod:`~gps_monitor.bus.mqtt_transport`: MQTT (Mosquitto, the demo's embedded broker), one
  partition (0).
- :mod:`~gps_monitor.bus.consumer`: the shared batch consumer (batching, step with commit and
  fence -> publish -> acknowledge in arrival order, the database-outage policy, stats).
- ``partition``, ``nats_names``, ``nats_transport``, ``fencing``: NATS JetStream partitions
  (names and the topic <-> subject mapping, the transport) and owner fencing.
"""
