package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
)

// upgradeCode identifies goreplica's MSI across versions (a major upgrade
// replaces an installed older version). Never change it.
const upgradeCode = "6F1C3B0E-8A1E-4F7E-9D2A-2B9F0C7D1E11"

// wxs is the WiX source wixl builds the MSI from:
//   - goreplica.exe in C:\Program Files\goreplica (nothing added to PATH);
//   - the sample configuration as C:\ProgramData\goreplica\goreplica.toml,
//     which the MSI never overwrites nor removes (its component's attributes
//     are set after wixl, which knows neither Permanent nor NeverOverwrite);
//   - the Windows service registered by `goreplica service install`, in a
//     deferred custom action running as LocalSystem, so that it gets exactly
//     the options a hand install gives (automatic start, restart 5 s after
//     any failure, the event log source), and left stopped: the sample
//     configuration must be edited first. `goreplica service uninstall`
//     stops and removes it on uninstall;
//   - a major upgrade (a newer MSI over an older one) removes the older
//     version first, service included, and registers the service again:
//     it is left stopped. (Keeping the registration would need
//     UPGRADINGPRODUCTCODE, which Wine's RemoveExistingProducts does not
//     set, so the tests could not see it work.)
//
// The custom actions carry explicit sequence numbers: wixl numbers an
// action scheduled Before="RemoveFiles" 1, outside the install script.
var wxs = template.Must(template.New("wxs").Parse(`<?xml version="1.0" encoding="utf-8"?>
<Wix xmlns="http://schemas.microsoft.com/wix/2006/wi">
  <Product Id="*" Name="goreplica" Language="1033" Version="{{.MSIVersion}}" Manufacturer="goreplica" UpgradeCode="{{.UpgradeCode}}">
    <Package InstallerVersion="500" Compressed="yes" InstallScope="perMachine"
      Description="goreplica {{.Version}}: trigger-based, NOTIFY-driven replication for PostgreSQL" Comments="commit {{.Commit}}"/>
    <Media Id="1" Cabinet="goreplica.cab" EmbedCab="yes"/>
    <MajorUpgrade DowngradeErrorMessage="A newer version of goreplica is already installed."/>
    <Directory Id="TARGETDIR" Name="SourceDir">
      <Directory Id="ProgramFiles64Folder">
        <Directory Id="INSTALLDIR" Name="goreplica">
          <Component Id="Binary" Guid="*" Win64="yes">
            <File Id="GoreplicaExe" Name="goreplica.exe" Source="{{.Exe}}" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
      <Directory Id="CommonAppDataFolder">
        <Directory Id="CONFIGDIR" Name="goreplica">
          <Component Id="Config" Guid="*" Win64="yes">
            <File Id="ConfigFile" Name="goreplica.toml" Source="{{.Config}}" KeyPath="yes"/>
          </Component>
        </Directory>
      </Directory>
    </Directory>
    <Feature Id="Main" Title="goreplica" Level="1">
      <ComponentRef Id="Binary"/>
      <ComponentRef Id="Config"/>
    </Feature>
    <CustomAction Id="InstallService" FileKey="GoreplicaExe" ExeCommand="service install -c &quot;[CONFIGDIR]goreplica.toml&quot;" Execute="deferred" Impersonate="no" Return="check"/>
    <CustomAction Id="UninstallService" FileKey="GoreplicaExe" ExeCommand="service uninstall" Execute="deferred" Impersonate="no" Return="ignore"/>
    <InstallExecuteSequence>
      <Custom Action="UninstallService" Sequence="3499">REMOVE~="ALL"</Custom>
      <Custom Action="InstallService" Sequence="4001">NOT Installed</Custom>
    </InstallExecuteSequence>
  </Product>
</Wix>
`))

// msiFixes are SQL statements msibuild runs on wixl's MSI:
//   - the configuration's component gets msidbComponentAttributes64bit
//     (256), Permanent (16: uninstall keeps it) and NeverOverwrite (128: an
//     upgrade keeps the edited file);
//   - a major upgrade removes the older version right after
//     InstallValidate, before anything is installed (wixl sequences it
//     after InstallFiles, where the older version's uninstall would remove
//     the service the new one just registered).
var msiFixes = []string{
	"UPDATE `Component` SET `Attributes` = 400 WHERE `Component` = 'Config'",
	"UPDATE `InstallExecuteSequence` SET `Sequence` = 1401 WHERE `Action` = 'RemoveExistingProducts'",
}

// msi builds the MSI of the Windows binary exe.
func (r release) msi(ctx context.Context, exe string) (string, error) {
	work, err := os.MkdirTemp("", "goreplica-msi-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	for src, dst := range map[string]string{exe: "goreplica.exe", filepath.Join(r.root, "sample.toml"): "goreplica.toml"} {
		if err := copyFile(src, filepath.Join(work, dst)); err != nil {
			return "", err
		}
	}
	src := filepath.Join(work, "goreplica.wxs")
	f, err := os.Create(src)
	if err != nil {
		return "", err
	}
	err = wxs.Execute(f, map[string]string{
		"MSIVersion":  msiVersion(r.version),
		"Version":     r.version,
		"Commit":      r.commit,
		"UpgradeCode": upgradeCode,
		// wixl takes only paths relative to its working directory.
		"Exe":    "goreplica.exe",
		"Config": "goreplica.toml",
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("MSI source: %w", err)
	}
	path := filepath.Join(r.out, fmt.Sprintf("goreplica-%s-windows-amd64.msi", r.version))
	if err := runTool(ctx, work, "wixl", "-a", "x64", "-o", path, src); err != nil {
		return "", err
	}
	for _, q := range msiFixes {
		if err := runTool(ctx, work, "msibuild", path, "-q", q); err != nil {
			return "", err
		}
	}
	return path, nil
}

// msiVersion is the ProductVersion of a release: MSI takes only numbers,
// so a pre-release has its release's version.
func msiVersion(v string) string {
	v, _, _ = strings.Cut(v, "-")
	return v
}

func runTool(ctx context.Context, dir, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	// wixl warns on stderr about what it ignores; a release must not
	// silently lose part of its source.
	if s := strings.TrimSpace(string(out)); s != "" && name == "wixl" {
		return fmt.Errorf("wixl: %s", s)
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}
