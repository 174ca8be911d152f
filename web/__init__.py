"""The process: application factory, configuration, CLI, HTTP routes and the browser client."""
