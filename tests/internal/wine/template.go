package wine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// templateTimeout bounds making the template: wineboot --init and the
// wait for its wineserver to exit take about 10 s here.
const templateTimeout = 5 * time.Minute

// template is a prefix initialised by wineboot --init, whose wineserver has
// exited, made once per test process and copied by New. A watchdog removes
// it when the test process exits.
type template struct {
	base     string // temporary directory: prefix/, the DLL, logs
	prefix   string
	dll      string // the bcryptprimitives.dll forwarder
	took     time.Duration
	initTook time.Duration
	// watchdog is never dismissed: it removes the template when this
	// process exits. Kept here, reachable, so that its pipe is never
	// collected and closed.
	watchdog *watchdog
}

var (
	templateMu  sync.Mutex
	templateVal *template
	templateErr error
)

// sharedTemplate returns the template, making it on the first call (built
// reports that). A failure is kept: later calls return it at once.
func sharedTemplate() (tpl *template, built bool, err error) {
	templateMu.Lock()
	defer templateMu.Unlock()
	if templateVal != nil || templateErr != nil {
		return templateVal, false, templateErr
	}
	templateVal, templateErr = makeTemplate()
	return templateVal, templateErr == nil, templateErr
}

func makeTemplate() (_ *template, err error) {
	start := time.Now()
	base, err := os.MkdirTemp("", "wine-template-")
	if err != nil {
		return nil, fmt.Errorf("make wine template: %w", err)
	}
	tpl := &template{base: base, prefix: filepath.Join(base, "prefix")}
	wd, err := startWatchdog(tpl.prefix, base)
	if err != nil {
		os.RemoveAll(base)
		return nil, fmt.Errorf("make wine template: %w", err)
	}
	defer func() {
		if err != nil {
			// The watchdog kills what is left and removes base.
			wd.fire()
			return
		}
		tpl.watchdog = wd
	}()
	ctx, cancel := context.WithTimeout(context.Background(), templateTimeout)
	defer cancel()
	if tpl.dll, err = buildForwarder(ctx, base); err != nil {
		return nil, fmt.Errorf("make wine template: %w", err)
	}
	// wineboot --init under the ordinary (not persistent) wineserver that
	// it starts, then wait for that server to exit: about 5 s after init,
	// when explorer.exe /desktop gives up.
	env := wineEnv(tpl.prefix, runDebug, bootOverrides)
	log := filepath.Join(base, "init.log")
	if err := runLogged(ctx, env, base, log, "wineboot", "--init"); err != nil {
		return nil, fmt.Errorf("make wine template: %w", err)
	}
	tpl.initTook = time.Since(start)
	if err := runLogged(ctx, env, base, log, "wineserver", "-w"); err != nil {
		return nil, fmt.Errorf("make wine template: %w", err)
	}
	if _, err := waitProcesses(ctx, tpl.prefix, func(ps []process) bool { return len(ps) == 0 }); err != nil {
		return nil, fmt.Errorf("make wine template: wait for its processes to exit: %w", err)
	}
	// The copies' wineservers make their own socket directories: this one
	// is no longer needed.
	if d := serverDirOf(tpl.prefix); d != "" {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("make wine template: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(tpl.prefix, "system.reg")); err != nil {
		return nil, fmt.Errorf("make wine template: wineboot --init made no registry: %w; end of %s:\n%s", err, log, tail(log))
	}
	tpl.took = time.Since(start)
	return tpl, nil
}

// Go >= 1.22 needs ProcessPrng from bcryptprimitives.dll, which Wine 8.0
// lacks ("fatal error: bcryptprimitives.dll not found"). The forwarder
// sends it to advapi32's SystemFunction036 (RtlGenRandom), whose BOOLEAN
// result is fine: Go tests only the low byte.
const (
	forwarderAsm = "\t.text\n\t.globl DllMain\nDllMain:\n\tmovl $1, %eax\n\tret\n"
	forwarderDef = "LIBRARY bcryptprimitives.dll\nEXPORTS\n  ProcessPrng = advapi32.SystemFunction036\n"
)

// buildForwarder assembles and links bcryptprimitives.dll in dir.
func buildForwarder(ctx context.Context, dir string) (string, error) {
	asm := filepath.Join(dir, "dllmain.s")
	def := filepath.Join(dir, "bcryptprimitives.def")
	obj := filepath.Join(dir, "dllmain.o")
	dll := filepath.Join(dir, "bcryptprimitives.dll")
	if err := os.WriteFile(asm, []byte(forwarderAsm), 0o644); err != nil {
		return "", fmt.Errorf("build bcryptprimitives.dll: %w", err)
	}
	if err := os.WriteFile(def, []byte(forwarderDef), 0o644); err != nil {
		return "", fmt.Errorf("build bcryptprimitives.dll: %w", err)
	}
	log := filepath.Join(dir, "dll.log")
	env := hostEnv()
	if err := runLogged(ctx, env, dir, log, "x86_64-w64-mingw32-as", "-o", obj, asm); err != nil {
		return "", fmt.Errorf("build bcryptprimitives.dll: %w", err)
	}
	if err := runLogged(ctx, env, dir, log, "x86_64-w64-mingw32-ld", "-shared", "--entry", "DllMain",
		"--subsystem", "windows", "-o", dll, obj, def); err != nil {
		return "", fmt.Errorf("build bcryptprimitives.dll: %w", err)
	}
	return dll, nil
}
