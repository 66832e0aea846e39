// Package config loads and validates goreplica's TOML configuration: strict
// decoding (unknown keys are errors), defaults, ${ENV} expansion and *_file
// secrets, and a Validate that reports every problem at once with its TOML
// path. It does not connect to anything.
package config
