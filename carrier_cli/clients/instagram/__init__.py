"""Publishing to Instagram through the official Graph API.

The pipeline is: validate and prepare the media locally (`media`, `mp4`, `captions`),
upload it to an FTP server that a public HTTP server serves (`ftp_upload`, `http_check`),
ask the Graph API to fetch it and publish it (`graph`), and record every step in a durable
journal (`journal`) so that a crash or a rerun never publishes the same post twice
(`pipeline`). `autopost` runs the pipeline on a timer for `carrier run --client instagram`.
"""
