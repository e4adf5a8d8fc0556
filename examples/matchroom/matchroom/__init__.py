"""A small Django Channels project: match rooms with chat, behind `ratelimit_channels`."""
