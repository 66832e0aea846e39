// Package dsn reads PostgreSQL connection strings (lib/pq's key=value and
// postgres:// forms) without ever letting a password into an error message
// or a printed string. It does not connect; package replicator does.
package dsn
