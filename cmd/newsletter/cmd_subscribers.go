package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"newsletter/editors"
	"newsletter/subscribers"
)

// subscribersCmd runs `newsletter subscribers import|export`.
func (a *App) subscribersCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"subscribers: want import, export or erase"}
	}
	switch args[0] {
	case "import":
		return a.subscribersImport(ctx, args[1:])
	case "export":
		if len(args) > 1 {
			return usageError{fmt.Sprintf("subscribers export: unexpected argument %q", args[1])}
		}
		if err := a.open(ctx); err != nil {
			return err
		}
		// Recorded before a byte is written: an export that then fails was still attempted.
		if err := a.editorStore().Audit(ctx, editors.AuditEntry{Actor: editors.CLIActor, Action: "readers.export", Detail: "CSV to standard output"}); err != nil {
			return err
		}
		return subscribers.NewStore(a.db, a.secret).ExportCSV(ctx, a.stdout)
	case "erase":
		if len(args) != 2 || strings.HasPrefix(args[1], "-") {
			return usageError{"subscribers erase: want one EMAIL"}
		}
		return a.subscribersErase(ctx, args[1])
	}
	return usageError{fmt.Sprintf("subscribers: unknown subcommand %q", args[0])}
}

// maxListedRows is how many bad rows the one error line names before summing up the rest.
const maxListedRows = 20

// subscribersImport runs `newsletter subscribers import [--skip-invalid] [--consent-text VERSION]
// FILE|-`. The flags may come before or after the file name.
func (a *App) subscribersImport(ctx context.Context, args []string) error {
	var skipInvalid bool
	var files []string
	var consentText string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--skip-invalid" || arg == "-skip-invalid":
			skipInvalid = true
		case arg == "--consent-text" || arg == "-consent-text":
			if i+1 == len(args) || strings.TrimSpace(args[i+1]) == "" {
				return usageError{"subscribers import: --consent-text wants the version of the consent text the file's readers agreed to"}
			}
			i++
			consentText = strings.TrimSpace(args[i])
		case strings.HasPrefix(arg, "--consent-text=") || strings.HasPrefix(arg, "-consent-text="):
			_, v, _ := strings.Cut(arg, "=")
			if consentText = strings.TrimSpace(v); consentText == "" {
				return usageError{"subscribers import: --consent-text wants the version of the consent text the file's readers agreed to"}
			}
		case strings.HasPrefix(arg, "-") && arg != "-":
			return usageError{fmt.Sprintf("subscribers import: unknown flag %q", arg)}
		default:
			files = append(files, arg)
		}
	}
	if len(files) != 1 {
		return usageError{"subscribers import: want one FILE, or - for standard input"}
	}
	// Kept as evidence, so refused rather than cut short.
	if len(consentText) > 64 {
		return usageError{"subscribers import: --consent-text: at most 64 bytes"}
	}
	var in io.Reader = a.stdin
	if files[0] != "-" {
		f, err := os.Open(files[0])
		if err != nil {
			return fmt.Errorf("subscribers import: %w", err)
		}
		defer f.Close()
		in = f
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	store := subscribers.NewStore(a.db, a.secret)
	rep, err := store.Import(ctx, in, subscribers.ImportOptions{Languages: a.cfg.Languages, SkipInvalid: skipInvalid,
		TextVersion: consentText, Actor: "cli"})
	if err != nil {
		if len(rep.Invalid) > 0 {
			return fmt.Errorf("subscribers import: %d bad rows, nothing imported (fix them or use --skip-invalid): %s",
				len(rep.Invalid), listRows(rep.Invalid))
		}
		if errors.Is(err, subscribers.ErrInvalid) {
			msg := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "import: "), ": "+subscribers.ErrInvalid.Error())
			return fmt.Errorf("subscribers import: %s", msg)
		}
		return err
	}
	if err := a.editorStore().Audit(ctx, editors.AuditEntry{Actor: editors.CLIActor, Action: "readers.import",
		Object: "import " + strconv.FormatInt(rep.ImportID, 10), Detail: fmt.Sprintf("%d rows: %d new, %d updated, %d unchanged, %d erased skipped, %d bad skipped",
			rep.Rows, rep.Inserted, rep.Updated, rep.Unchanged, len(rep.Suppressed), len(rep.Invalid))}); err != nil {
		return err
	}
	if len(rep.Invalid) > 0 {
		fmt.Fprintf(a.stderr, "newsletter: subscribers import: skipped %d bad rows: %s\n", len(rep.Invalid), listRows(rep.Invalid))
	}
	if len(rep.Suppressed) > 0 {
		fmt.Fprintf(a.stderr, "newsletter: subscribers import: skipped %d erased addresses (they need new consent): lines %s\n",
			len(rep.Suppressed), joinInts(rep.Suppressed))
	}
	fmt.Fprintf(a.stdout, "%d rows: %d new, %d updated, %d unchanged, %d erased skipped, %d bad skipped\n",
		rep.Rows, rep.Inserted, rep.Updated, rep.Unchanged, len(rep.Suppressed), len(rep.Invalid))
	if rep.ImportID != 0 {
		// The new readers' consent evidence: this record, and the file whose hash it keeps.
		fmt.Fprintf(a.stdout, "recorded as import %d, file SHA-256 %x\n", rep.ImportID, rep.FileSHA256)
	}
	return nil
}

// subscribersErase runs `newsletter subscribers erase EMAIL`: the reader's data goes, the address
// stays only as a keyed hash (as the readers' pages and the reader's own manage link erase).
func (a *App) subscribersErase(ctx context.Context, email string) error {
	if err := a.open(ctx); err != nil {
		return err
	}
	store := subscribers.NewStore(a.db, a.secret)
	s, err := store.FindByEmail(ctx, email)
	var fe *subscribers.FieldError
	switch {
	case errors.As(err, &fe):
		return usageError{"subscribers erase: that is not an email address"}
	case errors.Is(err, subscribers.ErrNotFound):
		return errors.New("subscribers erase: no reader has that address")
	case err != nil:
		return err
	}
	if err := a.editorStore().Audit(ctx, editors.AuditEntry{Actor: editors.CLIActor, Action: "reader.erase", Object: "reader " + s.UUID,
		Target: s.UUID, Detail: "was " + string(s.Status)}); err != nil {
		return err
	}
	if err := store.Erase(ctx, s.UUID); err != nil {
		return fmt.Errorf("subscribers erase: %w", err)
	}
	fmt.Fprintf(a.stdout, "erased reader %s; the address is kept only as a keyed hash\n", s.UUID)
	return nil
}

func listRows(rows []subscribers.RowError) string {
	var b strings.Builder
	for i, r := range rows {
		if i == maxListedRows {
			fmt.Fprintf(&b, "; and %d more", len(rows)-maxListedRows)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.Error())
	}
	return b.String()
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}
