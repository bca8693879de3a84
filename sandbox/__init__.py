"""The sandbox: the gateway with a built-in fake model and fake Graph API (the fakes the tests use), a demo
business on all three channels, and a terminal to chat as its customers (`python -m sandbox`)."""
