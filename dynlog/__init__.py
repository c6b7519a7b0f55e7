"""dynlog: a serverless, event-sourced POSIX network file system on DynamoDB."""

__version__ = "0.1.0"
