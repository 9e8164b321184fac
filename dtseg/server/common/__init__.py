"""What every route family shares: auth, body limits and the body route class, image decoding,
mask encoders, errors, strict schemas and Roboflow's common fields."""
