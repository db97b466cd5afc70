"""The example shop: a catalogue page, a login and an order that tracks "Order Completed"."""
