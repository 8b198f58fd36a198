;;; cfgate-actions.el --- Explain, fix and document the region through cfgate  -*- lexical-binding: t; -*-

;; Copyright (C) 2025 cfgate maintainers

;; Author: cfgate maintainers
;; SPDX-License-Identifier: MIT OR Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; The daemon's code actions (docs/protocol.md, Plain LSP) for the region:
;; `cfgate-explain-region' shows the explanation; `cfgate-fix-region' and
;; `cfgate-document-region' show the daemon's edit as a diff and apply it if the
;; user agrees.  The buffer is opened in the daemon (`textDocument/didOpen') for
;; the request only; the daemon's `workspace/applyEdit' is held by
;; `cfgate--handle-request' in cfgate.el until the user has seen it.

;;; Code:

(require 'cl-lib)
(require 'subr-x)
(require 'url-util)
(require 'cfgate)

(declare-function diff-mode "diff-mode")

(defvar cfgate-action-done-hook nil
  "Run when a code action (explain, fix, add docs) has ended.")

(defcustom cfgate-review-function #'cfgate-review-edit
  "Function called with ORIGINAL and REPLACEMENT text before a fix is applied.
It returns non-nil to apply the edit.  The default shows the diff and asks."
  :type 'function
  :group 'cfgate)

(defun cfgate--utf16-length (text)
  "TEXT's length in UTF-16 code units (LSP's default position encoding)."
  (/ (length (encode-coding-string text 'utf-16le)) 2))

(defun cfgate--lsp-position (pos)
  "The LSP position (line and UTF-16 character) of buffer position POS."
  (save-excursion
    (goto-char pos)
    (list :line (1- (line-number-at-pos pos t))
          :character (cfgate--utf16-length
                      (buffer-substring-no-properties (line-beginning-position) pos)))))

(defun cfgate--document-uri ()
  "The URI the daemon knows this buffer by while an action runs."
  (if buffer-file-name
      (concat "file://" (url-hexify-string (expand-file-name buffer-file-name) url-path-allowed-chars))
    (format "untitled:cfgate-%s-%s" (emacs-pid) (url-hexify-string (buffer-name)))))

(defun cfgate-review-edit (original replacement)
  "Show the change from ORIGINAL to REPLACEMENT as a diff; non-nil to apply it.
The diff is shown in `*cfgate-diff*', whose window goes away after the answer."
  (let ((old (make-temp-file "cfgate-old"))
        (new (make-temp-file "cfgate-new"))
        (name (buffer-name))
        (diff (get-buffer-create "*cfgate-diff*")))
    (unwind-protect
        (progn
          (let ((coding-system-for-write 'utf-8-unix))
            (write-region original nil old nil 'silent)
            (write-region replacement nil new nil 'silent))
          (with-current-buffer diff
            (let ((inhibit-read-only t))
              (erase-buffer)
              (call-process "diff" nil t nil "-u" "--label" name "--label"
                            (concat name " (cfgate)") old new)
              (diff-mode)
              (goto-char (point-min))))
          (let ((window (display-buffer diff)))
            (unwind-protect (y-or-n-p "cfgate: apply this edit? ")
              (when (window-live-p window) (quit-window nil window)))))
      (delete-file old)
      (delete-file new))))

(defun cfgate--run-action (command beg end on-done)
  "Run the daemon's code action COMMAND on the region BEG..END.
The buffer is opened in the daemon for the request and closed after;
ON-DONE gets the command's result."
  (unless (< beg end)
    (user-error "cfgate: select the code first"))
  (cfgate-start)
  (let* ((buffer (current-buffer))
         (uri (cfgate--document-uri))
         (range (list :start (cfgate--lsp-position beg) :end (cfgate--lsp-position end)))
         (close (lambda ()
                  (when (cfgate-running-p)
                    (jsonrpc-notify cfgate--connection :textDocument/didClose
                                    (list :textDocument (list :uri uri)))))))
    (remhash uri cfgate--pending-edits)
    (jsonrpc-notify cfgate--connection :textDocument/didOpen
                    (list :textDocument
                          (list :uri uri :languageId (cfgate--language) :version 1
                                :text (buffer-substring-no-properties (point-min) (point-max)))))
    (message "cfgate: %s..." command)
    (cfgate--request :workspace/executeCommand
                     (list :command command :arguments (vector (list :uri uri :range range)))
                     :on-result (lambda (result)
                                  (funcall close)
                                  (when (buffer-live-p buffer)
                                    (with-current-buffer buffer
                                      (funcall on-done result (gethash uri cfgate--pending-edits))))
                                  (remhash uri cfgate--pending-edits))
                     :on-error (lambda (err)
                                 (funcall close)
                                 (remhash uri cfgate--pending-edits)
                                 (cfgate--report-error err)))))

(defun cfgate--apply-reviewed (beg end edits)
  "Apply EDITS (the daemon's TextEdits for the region BEG..END) once reviewed.
The region must still hold what was sent."
  (let ((edit (and (= (length edits) 1) (aref (vconcat edits) 0)))
        (original (buffer-substring-no-properties beg end)))
    (cond
     ((not edit) (message "cfgate: the daemon sent no edit"))
     ((let ((start (plist-get (plist-get edit :range) :start))
            (here (cfgate--lsp-position beg)))
        (not (and (eql (plist-get start :line) (plist-get here :line))
                  (eql (plist-get start :character) (plist-get here :character)))))
      (message "cfgate: the edit is not for the region; not applied"))
     ((save-current-buffer
        (save-window-excursion
          (funcall cfgate-review-function original (plist-get edit :newText))))
      (save-excursion
        (goto-char beg)
        (delete-region beg end)
        (insert (plist-get edit :newText)))
      (message "cfgate: edit applied"))
     (t (message "cfgate: edit not applied")))))

(defun cfgate--edit-action (command beg end)
  "Run COMMAND (fix or add docs) on BEG..END; review its edit, then apply it."
  (let* ((beg-marker (copy-marker beg))
         (end-marker (copy-marker end t))
         (original (buffer-substring-no-properties beg end)))
    (cfgate--run-action
     command beg end
     (lambda (_result edits)
       (if (not (equal (buffer-substring-no-properties beg-marker end-marker) original))
           (message "cfgate: the region changed while the model worked; edit not applied")
         (cfgate--apply-reviewed (marker-position beg-marker) (marker-position end-marker) edits))
       (run-hooks 'cfgate-action-done-hook)))))

;;;###autoload
(defun cfgate-fix-region (beg end)
  "Ask the model to fix the code in the region BEG..END.
The fix is shown as a diff (`cfgate-review-function') before it replaces
the region."
  (interactive "r")
  (cfgate--edit-action "cfgate.fix" beg end))

;;;###autoload
(defun cfgate-document-region (beg end)
  "Ask the model to add doc comments to the code in the region BEG..END.
The result is shown as a diff before it replaces the region."
  (interactive "r")
  (cfgate--edit-action "cfgate.addDocs" beg end))

;;;###autoload
(defun cfgate-explain-region (beg end)
  "Ask the model to explain the code in the region BEG..END, in `*cfgate-ask*'."
  (interactive "r")
  (cfgate--run-action
   "cfgate.explain" beg end
   (lambda (result _edits)
     (let ((text (plist-get result :explanation)))
       (with-current-buffer (get-buffer-create cfgate-ask-buffer-name)
         (let ((inhibit-read-only t))
           (unless (derived-mode-p 'cfgate-answer-mode) (cfgate-answer-mode))
           (erase-buffer)
           (insert (if (stringp text) text "")))
         (display-buffer (current-buffer))))
     (run-hooks 'cfgate-action-done-hook))))

(provide 'cfgate-actions)
;;; cfgate-actions.el ends here
