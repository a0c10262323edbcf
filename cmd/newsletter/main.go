// Command newsletter runs a publication's email newsletter and weekly digest: the subscribe pages,
// the feeds, the digest schedule and the sending engine, all from one binary.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	// The zone database in the binary: NEWSLETTER_TIMEZONE and CRON_TZ= name IANA zones, and a host
	// or image without /usr/share/zoneinfo would refuse them at start.
	_ "time/tzdata"
)

// Exit statuses promised by the public interface.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitNothing = 3
)

// errNothing marks a command that had nothing to do (exit 3).
var errNothing = errors.New("nothing to do")

// usageError marks bad usage (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}

const usage = `usage: newsletter COMMAND

commands:
  serve                                  migrate, then run the web server, schedules and senders
  migrate                                apply pending migrations and exit
  ingest                                 fetch every configured feed once
  digest preview [--lang L] [--format html|text]
  digest send [--lang L|all] [--yes]
  digest pause|resume|cancel ISSUE_ID
  subscribers import [--skip-invalid] [--consent-text VERSION] FILE|-
  subscribers export
  subscribers erase EMAIL                erase one reader (the address kept as a keyed hash)
  editors add EMAIL --role writer|publisher|admin [--name NAME]
                                         add an editor; prints a one-time link to set the password
  editors list                           every editor: address, role, state
  editors disable|enable EMAIL
  editors reset EMAIL                    clear password and TOTP, end the sessions; prints a new link
  bench send [--readers N] [--newsletters K]
                                         measure the sending engine against a local sink
  bench http [--duration D] [--clients N] [--target subscribe|archive|unsubscribe|all] [--cpuprofile FILE]

Settings come from NEWSLETTER_* environment variables; see the README.
`

// run is the whole program; it returns the exit status. Nothing in it reads globals: the
// environment comes through getenv, so tests run it side by side.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	return runApp(ctx, &App{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}, args)
}

// runApp is run on an App whose environment and streams are set; end-to-end tests also set its
// ready channel to learn the server's address.
func runApp(ctx context.Context, app *App, args []string) int {
	stderr := app.stderr
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	cfg, err := LoadConfig(app.getenv)
	if err != nil {
		fmt.Fprintf(stderr, "newsletter: settings: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return exitFailure
	}
	app.cfg, app.log = cfg, newLogger(stderr, cfg.LogLevel)
	defer app.Close()

	err = app.dispatch(ctx, args)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "newsletter: %s\n\n%s", ue.msg, usage)
		return exitUsage
	case errors.Is(err, errNothing):
		fmt.Fprintf(stderr, "newsletter: %s\n", err)
		return exitNothing
	default:
		fmt.Fprintf(stderr, "newsletter: %s\n", oneLine(err.Error()))
		return exitFailure
	}
}

func (a *App) dispatch(ctx context.Context, args []string) error {
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return a.serve(ctx, rest)
	case "migrate":
		return a.open(ctx)
	case "ingest":
		return a.ingest(ctx, rest)
	case "digest":
		return a.digestCmd(ctx, rest)
	case "subscribers":
		return a.subscribersCmd(ctx, rest)
	case "editors":
		return a.editorsCmd(ctx, rest)
	case "bench":
		return a.benchCmd(ctx, rest)
	}
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
