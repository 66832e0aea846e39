// Package buildinfo tells which build of goreplica is running: its version,
// the commit it was built from and when. A release build sets them with
// -ldflags -X (see dist/); a build from `go install` or `go build` in a Git
// checkout takes them from the module and VCS data the Go toolchain records
// (debug.ReadBuildInfo). It does not look anything up at run time.
package buildinfo
