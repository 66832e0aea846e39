// Package pgtest starts a throwaway PostgreSQL server for a test and removes
// it when the test ends; it does not share servers between tests or connect
// to an existing server.
//
// When the PostgreSQL binaries are missing, [Start] skips the test with a
// message saying how to install them, or fails it when the CI environment
// variable is set, so that a CI runner without PostgreSQL cannot pass by
// skipping everything.
package pgtest
