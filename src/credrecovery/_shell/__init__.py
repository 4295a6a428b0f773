"""How the two services run the flows: performing effects, the hashing cap, event hooks,
and the code and support methods both services share."""
