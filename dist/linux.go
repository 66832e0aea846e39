package main

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"

	"github.com/goreplica/goreplica/service"
)

// What the Linux packages install.
const (
	binPath    = "/usr/bin/goreplica"
	configDir  = "/etc/goreplica"
	configPath = configDir + "/goreplica.toml"
	logDir     = "/var/log/goreplica"
	unitPath   = "/usr/lib/systemd/system/" + service.DefaultName + ".service"
	// user owns the configuration and the log directory and runs the
	// service; the package's preinstall script creates it.
	user = "goreplica"
)

//go:embed scripts/*.sh
var scripts embed.FS

// packagedService is the service the Linux packages install: the unit
// `goreplica service print-unit -c /etc/goreplica/goreplica.toml --user
// goreplica` prints for /usr/bin/goreplica.
func packagedService() service.Config {
	return service.Config{Name: service.DefaultName, Executable: binPath, ConfigPath: configPath, User: user}
}

// linuxPackage builds the .deb or .rpm (format) of the binary bin for goarch.
func (r release) linuxPackage(format, goarch, bin string) (string, error) {
	work, err := os.MkdirTemp("", "goreplica-dist-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	unit, err := service.Unit(packagedService())
	if err != nil {
		return "", fmt.Errorf("systemd unit: %w", err)
	}
	unitFile := filepath.Join(work, "goreplica.service")
	if err := os.WriteFile(unitFile, []byte(unit), 0o644); err != nil {
		return "", err
	}
	script := func(name string) (string, error) {
		b, err := scripts.ReadFile("scripts/" + name)
		if err != nil {
			return "", err
		}
		p := filepath.Join(work, name)
		return p, os.WriteFile(p, b, 0o755)
	}
	var s nfpm.Scripts
	for _, x := range []struct {
		dst  *string
		name string
	}{{&s.PreInstall, "preinstall.sh"}, {&s.PostInstall, "postinstall.sh"}, {&s.PreRemove, "preremove.sh"}, {&s.PostRemove, "postremove.sh"}} {
		if *x.dst, err = script(x.name); err != nil {
			return "", err
		}
	}
	owned := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: user, Group: user, Mode: mode, MTime: r.date}
	}
	rootOwned := func(mode os.FileMode) *files.ContentFileInfo {
		return &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: r.date}
	}
	info := &nfpm.Info{
		Name:        "goreplica",
		Arch:        goarch,
		Platform:    "linux",
		Version:     r.version,
		Release:     "1",
		Section:     "database",
		Priority:    "optional",
		Maintainer:  r.maintainer,
		Vendor:      "goreplica",
		Homepage:    "https://github.com/goreplica/goreplica",
		Description: "trigger-based, NOTIFY-driven replication for PostgreSQL\nCopies changes to chosen tables of one PostgreSQL database to one or more\nother databases, asynchronously, exactly once and in order, as a systemd\nservice. The unit is installed but neither enabled nor started: edit\n/etc/goreplica/goreplica.toml, run goreplica init -c on it, then\nsystemctl enable --now goreplica.",
		MTime:       r.date,
		Overridables: nfpm.Overridables{
			Contents: files.Contents{
				{Source: bin, Destination: binPath, FileInfo: rootOwned(0o755)},
				{Destination: configDir, Type: files.TypeDir, FileInfo: rootOwned(0o755)},
				{Source: filepath.Join(r.root, "sample.toml"), Destination: configPath, Type: files.TypeConfigNoReplace, FileInfo: owned(0o640)},
				{Destination: logDir, Type: files.TypeDir, FileInfo: owned(0o750)},
				{Source: unitFile, Destination: unitPath, FileInfo: rootOwned(0o644)},
			},
			Scripts: s,
			RPM: nfpm.RPM{
				Summary:  "trigger-based, NOTIFY-driven replication for PostgreSQL",
				Group:    "Applications/Databases",
				Packager: r.maintainer,
			},
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	var p nfpm.Packager = deb.Default
	if format == "rpm" {
		p = rpm.DefaultRPM
	}
	path := filepath.Join(r.out, p.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := p.Package(info, f); err != nil {
		f.Close()
		return "", fmt.Errorf("%s package: %w", format, err)
	}
	return path, f.Close()
}
