package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"newsletter/editors"
)

// editorStore is the store of the editors' accounts, sessions and audit log.
func (a *App) editorStore() *editors.Store {
	return editors.NewStore(a.db, a.secret, editors.Options{Issuer: a.cfg.Publication, SharedPassword: a.cfg.AdminPassword})
}

// editorsCmd runs `newsletter editors add|list|disable|enable|reset`. Whoever runs it holds the
// server, so it needs no login; each change is in the audit log as actor cli.
func (a *App) editorsCmd(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return usageError{"editors: want add, list, disable, enable or reset"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "add":
		return a.editorsAdd(ctx, rest)
	case "list":
		if len(rest) > 0 {
			return usageError{fmt.Sprintf("editors list: unexpected argument %q", rest[0])}
		}
		return a.editorsList(ctx)
	case "disable", "enable", "reset":
		if len(rest) != 1 || strings.HasPrefix(rest[0], "-") {
			return usageError{"editors " + cmd + ": want one EMAIL"}
		}
		return a.editorsChange(ctx, cmd, rest[0])
	}
	return usageError{fmt.Sprintf("editors: unknown subcommand %q", cmd)}
}

// editorsAdd runs `newsletter editors add EMAIL --role writer|publisher|admin [--name NAME]`; the
// flags may come before or after the address. It prints the one-time link to set the password.
func (a *App) editorsAdd(ctx context.Context, args []string) error {
	var email, roleName, name string
	var haveName bool
	for i := 0; i < len(args); i++ {
		arg := args[i]
		flag, value, inline := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		switch {
		case strings.HasPrefix(arg, "-") && (flag == "role" || flag == "name"):
			if !inline {
				if i+1 == len(args) {
					return usageError{"editors add: --" + flag + " wants a value"}
				}
				i++
				value = args[i]
			}
			if flag == "role" {
				roleName = value
			} else {
				name, haveName = strings.TrimSpace(value), true
			}
		case strings.HasPrefix(arg, "-"):
			return usageError{fmt.Sprintf("editors add: unknown flag %q", arg)}
		case email != "":
			return usageError{fmt.Sprintf("editors add: unexpected argument %q", arg)}
		default:
			email = arg
		}
	}
	if email == "" {
		return usageError{"editors add: want EMAIL --role writer|publisher|admin"}
	}
	norm, err := editors.NormalizeEmail(email)
	if err != nil {
		return usageError{fmt.Sprintf("editors add: %q is not an email address", email)}
	}
	if roleName == "" {
		return usageError{"editors add: --role writer|publisher|admin is required"}
	}
	role, err := editors.ParseRole(roleName)
	if err != nil {
		return usageError{fmt.Sprintf("editors add: --role %q: want writer, publisher or admin", roleName)}
	}
	if haveName && editors.CheckName(name) != nil {
		return usageError{"editors add: --name: at most 100 characters, no control characters"}
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	store := a.editorStore()
	ed, link, err := store.Add(ctx, norm, name, role)
	if errors.Is(err, editors.ErrExists) {
		return fmt.Errorf("editors add: %s is an editor already (editors reset %s makes a new link)", norm, norm)
	}
	if err != nil {
		return fmt.Errorf("editors add: %w", err)
	}
	if err := store.Audit(ctx, editors.AuditEntry{Actor: editors.CLIActor, Action: "editor.add", Object: "editor " + strconv.FormatInt(ed.ID, 10),
		Detail: ed.Email + " as " + role.String() + "; a one-time link printed"}); err != nil {
		return err
	}
	a.printLink(ed, link)
	return nil
}

// printLink writes the link alone on stdout (for a script) and what it is for on stderr.
func (a *App) printLink(ed editors.Editor, link editors.Link) {
	fmt.Fprintln(a.stdout, a.cfg.BaseURL+"/admin/setup/"+link.Token)
	fmt.Fprintf(a.stderr, "newsletter: %s (%s): open the link above to set the password; it works once, until %s\n",
		ed.Email, ed.Role, link.ExpiresAt.UTC().Format("2006-01-02 15:04 UTC"))
}

// editorsList prints every editor: address, role, state, two-factor, last login, name.
func (a *App) editorsList(ctx context.Context) error {
	if err := a.open(ctx); err != nil {
		return err
	}
	list, err := a.editorStore().List(ctx)
	if err != nil {
		return fmt.Errorf("editors list: %w", err)
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EMAIL\tROLE\tSTATE\tTOTP\tLAST LOGIN\tNAME")
	for _, ed := range list {
		totp, last := "off", "never"
		if ed.TOTP {
			totp = "on"
		}
		if ed.LastLoginAt != nil {
			last = ed.LastLoginAt.UTC().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ed.Email, ed.Role, ed.State(), totp, last, ed.Name)
	}
	return tw.Flush()
}

// editorsChange runs `editors disable|enable|reset EMAIL`.
func (a *App) editorsChange(ctx context.Context, cmd, email string) error {
	if _, err := editors.NormalizeEmail(email); err != nil {
		return usageError{fmt.Sprintf("editors %s: %q is not an email address", cmd, email)}
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	store := a.editorStore()
	ed, err := store.ByEmail(ctx, email)
	if errors.Is(err, editors.ErrNotFound) {
		return fmt.Errorf("editors %s: no editor has the address %s", cmd, strings.ToLower(strings.TrimSpace(email)))
	}
	if err != nil {
		return fmt.Errorf("editors %s: %w", cmd, err)
	}
	entry := editors.AuditEntry{Actor: editors.CLIActor, Action: "editor." + cmd, Object: "editor " + strconv.FormatInt(ed.ID, 10)}
	if err := store.Audit(ctx, entry); err != nil {
		return err
	}
	var link editors.Link
	switch cmd {
	case "disable":
		ed, err = store.Disable(ctx, ed.ID)
	case "enable":
		ed, err = store.Enable(ctx, ed.ID)
	case "reset":
		ed, link, err = store.Reset(ctx, ed.ID)
	}
	if errors.Is(err, editors.ErrLastAdmin) {
		return fmt.Errorf("editors %s: %s is the last enabled admin; make another editor an admin first", cmd, ed.Email)
	}
	if err != nil {
		return fmt.Errorf("editors %s: %w", cmd, err)
	}
	if cmd == "reset" {
		a.printLink(ed, link)
		return nil
	}
	fmt.Fprintf(a.stdout, "%s: %s\n", ed.Email, ed.State())
	return nil
}
