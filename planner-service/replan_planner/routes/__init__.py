"""The planner's HTTP routes, one router per area; `app.create_app` includes them."""
