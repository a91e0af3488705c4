"""Authentication for Carrier's API: keys made with `carrier api-keys`, checked by
`carrier serve` (auth.keys)."""
