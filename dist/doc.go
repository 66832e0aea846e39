// Command dist builds goreplica's release artifacts into one directory:
// static binaries for linux/amd64, linux/arm64 and windows/amd64, a .deb
// and an .rpm per Linux architecture (through nfpm, used as a library), an
// MSI for windows/amd64 (through wixl, from Debian's wixl package) and a
// SHA256SUMS file.
//
//	go -C dist run . [-o DIR] [-version 1.2.0] [-targets linux/amd64,windows/amd64]
//
// The packages' systemd unit is the one `goreplica service print-unit`
// prints (package service renders both), and the MSI registers the
// Windows service by running `goreplica service install`, so that a
// packaged service is set up exactly as a hand-installed one. It neither
// signs nor publishes anything.
package main
