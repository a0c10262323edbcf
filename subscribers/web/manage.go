package web

import (
	"errors"
	"net/http"

	"newsletter/subscribers"
)

// managePage is the data of page/manage.html.
type managePage struct {
	Action, EraseAction, DataAction string
	Email, Name, Lang, Status       string
	Languages                       []langOption
	Errors                          map[string]string
	Saved                           bool
	// Newsletters are the toggles (newsletterOption); Notice a line under the title after a save
	// that changed more than settings (left everything, came back).
	Newsletters []newsletterOption
	Notice      string
}

// ManagePage serves GET /manage/{token}: name and language, download my data, erase me.
func (h *Handler) ManagePage(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	h.renderManage(w, r, http.StatusOK, s, nil, false)
}

func (h *Handler) renderManage(w http.ResponseWriter, r *http.Request, status int, s subscribers.Subscriber, errs map[string]string, saved bool) {
	h.renderManageNotice(w, r, status, s, errs, saved, "")
}

func (h *Handler) renderManageNotice(w http.ResponseWriter, r *http.Request, status int, s subscribers.Subscriber, errs map[string]string, saved bool, notice string) {
	base := "/manage/" + r.PathValue("token")
	lang := s.Lang
	if !h.hasLang(lang) {
		lang = h.opts.Languages[0]
	}
	d := managePage{Action: base, EraseAction: base + "/erase", DataAction: base + "/data.json", Email: s.Email, Name: s.Name, Lang: s.Lang,
		Status: h.cat.T(lang, "subscribers.status."+string(s.Status)), Errors: errs, Saved: saved}
	for _, l := range h.opts.Languages {
		d.Languages = append(d.Languages, langOption{Code: l, Label: languageName(l), Selected: l == s.Lang})
	}
	var err error
	if d.Newsletters, err = h.newsletterOptions(r, s, lang); err != nil {
		h.fail(w, r, lang, "manage", err)
		return
	}
	if notice != "" {
		d.Notice = h.cat.T(lang, notice)
	}
	h.render(w, status, "manage", lang, h.cat.T(lang, "subscribers.manage.title"), d)
}

// Manage serves POST /manage/{token}: changes the reader's name and language and, where the page
// showed its toggles, the newsletters they get (manage_newsletters.go); or, from the "leave
// everything" button, leaves every newsletter.
func (h *Handler) Manage(w http.ResponseWriter, r *http.Request) {
	if err := decodeForm(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	if r.PostFormValue("leave") == "all" {
		h.leaveAll(w, r, s)
		return
	}
	in := subscribeInput{Email: s.Email, Name: s.Name, Lang: s.Lang}
	if r.PostForm.Has("name") {
		in.Name = r.PostFormValue("name")
	}
	if r.PostForm.Has("lang") {
		in.Lang = r.PostFormValue("lang")
	}
	_, name, lang, err := h.validate(in, s.Lang)
	var res subscribers.ManageResult
	if err == nil {
		var mi subscribers.ManageInput
		if mi, err = h.manageInput(r, name, lang); err == nil {
			before := s
			s, res, err = h.store.Manage(r.Context(), s.UUID, mi)
			if err != nil {
				s = before
			}
		}
	}
	var fe *subscribers.FieldError
	switch {
	case errors.As(err, &fe):
		h.renderManage(w, r, http.StatusBadRequest, s, map[string]string{fe.Field: h.fieldMessage(s.Lang, fe)}, false)
		return
	case err != nil:
		h.fail(w, r, s.Lang, "manage", err)
		return
	}
	notice := ""
	switch {
	case res.Unsubscribed:
		h.unsubscribes.Inc()
		notice = "subscribers.manage.left_all"
	case res.Returned:
		notice = "subscribers.manage.returned"
	}
	h.renderManageNotice(w, r, http.StatusOK, s, nil, true, notice)
}

// Data serves GET /manage/{token}/data.json: everything kept about the reader, as a download.
func (h *Handler) Data(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	v, err := h.store.DataExport(r.Context(), s.UUID)
	if err != nil {
		h.fail(w, r, s.Lang, "data export", err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="newsletter-data.json"`)
	writeJSON(w, http.StatusOK, v)
}

// Erase serves POST /manage/{token}/erase: deletes the reader's personal data once they tick the box.
func (h *Handler) Erase(w http.ResponseWriter, r *http.Request) {
	if err := decodeForm(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		h.renderManage(w, r, http.StatusBadRequest, s, map[string]string{"erase": h.cat.T(s.Lang, "subscribers.error.erase_confirm")}, false)
		return
	}
	err := h.store.Erase(r.Context(), s.UUID)
	if err != nil {
		h.fail(w, r, s.Lang, "erase", err)
		return
	}
	h.message(w, http.StatusOK, s.Lang, message{Title: h.cat.T(s.Lang, "subscribers.erased.title"), Text: h.cat.T(s.Lang, "subscribers.erased.text"), OK: true})
}
