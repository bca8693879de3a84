"""What the tests share and are not tests themselves: provisioning through the real API, Meta traffic, the one
database helper, the gateway as a child process, rows for the reports, and where the project's files are."""
