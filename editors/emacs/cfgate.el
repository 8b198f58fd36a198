;;; cfgate.el --- Cloudflare AI Gateway through the cfgate daemon  -*- lexical-binding: t; -*-

;; Copyright (C) 2025 cfgate maintainers

;; Author: cfgate maintainers
;; Version: 0.1.0
;; Package-Requires: ((emacs "28.1") (jsonrpc "1.0.14"))
;; Keywords: tools, convenience
;; SPDX-License-Identifier: MIT OR Apache-2.0

;; This file is not part of GNU Emacs.

;;; Commentary:

;; cfgate is a small daemon in front of Cloudflare AI Gateway.  This package
;; starts `cfgate serve' as a child process and talks JSON-RPC to it with the
;; built-in jsonrpc.el (LSP framing over stdio).  It offers:
;;
;; - `cfgate-chat': a chat buffer; answers stream in as they arrive and the
;;   whole conversation (kept in the buffer) is sent on every turn.  With a
;;   session (C-u M-x cfgate-chat, `cfgate-sessions', `cfgate-chat-session'),
;;   the daemon keeps the conversation: every editor and `cfgate chat
;;   --session' continues it, and only the new message is sent.
;; - `cfgate-explain-region', `cfgate-fix-region', `cfgate-document-region'
;;   (cfgate-actions.el): the daemon's code actions, edits shown as a diff first.
;; - `cfgate-ask-region': ask about the region; the answer streams into a
;;   buffer.
;; - `cfgate-complete-at-point': a completion-at-point function offering the
;;   model's completion at point as the candidate.
;; - `cfgate-suggest' / `cfgate-accept-suggestion': an inline suggestion shown
;;   as an overlay after point; any other command removes it and cancels its
;;   request.  `cfgate-inline-mode' asks for one whenever typing pauses.
;; - `cfgate-select-model' (cfgate-models.el): the models the gateway offers.
;; - `cfgate-status', `cfgate-restart', `cfgate-shutdown';
;;   the daemon's state in the mode line (`cfgate-inline-mode',
;;   `cfgate-mode-line-mode'): cfgate:ready, cfgate:busy, cfgate:error, ...;
;;   cfgate:rate limited (face `cfgate-rate-limited') while a gateway's rate
;;   budget cools down after a 429.  A chat waiting for the budget shows how
;;   long ("rate limited: waiting 3 s") where the answer will come and in the
;;   echo area, until the answer starts; `cfgate-status' lists each gateway's
;;   budget and cool-down.
;;
;; Credentials come from the daemon's usual places (environment,
;; ~/.config/cfgate/config.toml) or from `cfgate-settings'.
;;
;; Quick start:
;;
;;   (use-package cfgate
;;     :load-path "/path/to/cfgate/editors/emacs"
;;     :commands (cfgate-chat cfgate-ask-region cfgate-suggest)
;;     :custom (cfgate-settings '((model . "@cf/meta/llama-3.3-70b-instruct-fp8-fast"))))

;;; Code:

(require 'cl-lib)
(require 'jsonrpc)
(require 'subr-x)


(defgroup cfgate nil
  "Cloudflare AI Gateway through the cfgate daemon."
  :group 'tools
  :prefix "cfgate-")

(defcustom cfgate-executable "cfgate"
  "The cfgate executable: a file name, or a name in the variable `exec-path'."
  :type 'string)

(defcustom cfgate-server-args '("serve" "--shared")
  "Arguments that start the daemon on stdio.
With \"--shared\", Emacs joins the user's one shared daemon (one
connection pool, the same conversations as every other tool); without
it, Emacs gets a private daemon."
  :type '(repeat string))

(defcustom cfgate-settings nil
  "Daemon settings, sent as `initializationOptions' when it starts.
An alist such as ((model . \"openai/gpt-4o-mini\") (max_tokens . 1024))
or a plist such as (:model \"openai/gpt-4o-mini\").  The keys are the
daemon's: api_token, account_id, gateway_id, gateway_token, base_url,
gateway_url, model, max_tokens, timeout_secs, idle_timeout_secs,
max_attempts, retry_deadline_secs, allow_insecure_http,
completion_context_chars, language_features, endpoint, api_url, byok,
gateway, connect_timeout_secs, max_in_flight, session_budget_tokens,
idle_exit_secs, listen_origins.  The daemon
refuses to start with an unknown key; `cfgate-start' then says which."
  :type '(choice (alist :key-type symbol :value-type sexp)
                 (plist :key-type keyword :value-type sexp)))

(defcustom cfgate-environment nil
  "Extra environment for the daemon, as a list of \"NAME=VALUE\" strings."
  :type '(repeat string))

(defcustom cfgate-chat-system-prompt nil
  "A system message sent first with every chat request, or nil."
  :type '(choice (const :tag "None" nil) string))

(defcustom cfgate-chat-session nil
  "The session `cfgate-chat' continues by default.
nil: a plain chat, kept only in the buffer; a string: that session's name;
a function: called with the project's root directory (or
`default-directory'), it returns a name or nil.  A session is a
conversation the daemon keeps, which every editor and `cfgate chat
--session' can continue."
  :type '(choice (const :tag "None" nil) string function))

(defcustom cfgate-chat-user-heading "## You"
  "The line that starts a message of yours in the chat buffer."
  :type 'string)

(defcustom cfgate-chat-assistant-heading "## cfgate"
  "The line that starts an answer in the chat buffer."
  :type 'string)

(defcustom cfgate-chat-params nil
  "Extra OpenAI fields for chat requests, as a plist (e.g. (:temperature 0.2))."
  :type '(plist :key-type keyword :value-type sexp))

(defcustom cfgate-complete-max-tokens nil
  "The `max_tokens' of completion requests, or nil for the daemon's default."
  :type '(choice (const :tag "Default" nil) integer))

(defcustom cfgate-idle-delay 0.15
  "Seconds of idle time before `cfgate-inline-mode' asks for a suggestion."
  :type 'number)

(defcustom cfgate-sync-timeout 30
  "Seconds a blocking request (status, completion at point) may take."
  :type 'number)

(defcustom cfgate-events-buffer-size 0
  "Size of the JSON-RPC events log buffer; 0 disables it, nil is unlimited.
Takes effect when the daemon starts."
  :type '(choice (const :tag "Unlimited" nil) integer))

(defface cfgate-suggestion-face
  '((t :inherit shadow))
  "Face of the inline suggestion.")

(defface cfgate-rate-limited
  '((t :inherit warning))
  "Face of the rate-limited state: in the mode line while a gateway's rate
budget cools down after a 429, and of the waiting note in chat buffers.")

(defface cfgate-chat-heading-face
  '((t :inherit font-lock-keyword-face :weight bold))
  "Face of the headings in the chat buffer.")


;;;; Connection

(defvar cfgate--connection nil
  "The `jsonrpc-process-connection' to the daemon, or nil.")

(defvar cfgate--process nil
  "The daemon's process, or nil.")

(defvar cfgate--progress-handlers (make-hash-table :test #'equal)
  "Progress token -> function of one argument, the `$/progress' value.")

(defvar cfgate--token-counter 0
  "Counter for progress tokens.")

(defvar cfgate--requests nil
  "Requests in flight, failed when the daemon goes away.")

(defvar cfgate--status nil
  "The daemon's last `cfgate/didChangeStatus' params (:state :message), or nil.")

(defvar cfgate--inline-error nil
  "The inline-suggestion error line last shown.")

(defvar cfgate--pending-edits (make-hash-table :test #'equal)
  "Document URI -> the WorkspaceEdit the daemon sent for it, held for review.")

(cl-defstruct (cfgate--req (:constructor cfgate--req-make) (:copier nil))
  "A request sent to the daemon."
  id token done cancelled on-result on-error)

(defun cfgate--format-error (err)
  "Return ERR, a JSON-RPC error plist, as \"cfgate: MESSAGE\" plus its hint."
  (let* ((message (and (consp err) (plist-get err :message)))
         (data (and (consp err) (plist-get err :data)))
         (hint (and (consp data) (plist-get data :hint))))
    (unless (and (stringp message) (not (string-empty-p message)))
      (setq message (if (stringp err) err (format "request failed %S" err))))
    (if (and (stringp hint) (not (string-empty-p hint)))
        (format "cfgate: %s\nhint: %s" message hint)
      (format "cfgate: %s" message))))

(defun cfgate--cancelled-p (err)
  "Non-nil if ERR is the JSON-RPC RequestCancelled error."
  (and (consp err) (eql (plist-get err :code) -32800)))

(defun cfgate--report-error (err)
  "Show ERR in the echo area unless it is a cancellation."
  (unless (cfgate--cancelled-p err)
    (message "%s" (cfgate--format-error err))))

(defun cfgate--settings-object ()
  "`cfgate-settings' as a plist for JSON, or nil when empty."
  (cond
   ((null cfgate-settings) nil)
   ((keywordp (car cfgate-settings)) cfgate-settings)
   (t (cl-loop for (key . value) in cfgate-settings
               append (list (intern (format ":%s" key)) value)))))

(defun cfgate-running-p ()
  "Return non-nil if the daemon is running."
  (and cfgate--connection (jsonrpc-running-p cfgate--connection)))

(defun cfgate--handle-notification (_conn method params)
  "Handle notification METHOD with PARAMS from the daemon."
  (pcase method
    ('$/progress
     (let ((handler (gethash (plist-get params :token) cfgate--progress-handlers)))
       (when handler
         (funcall handler (plist-get params :value)))))
    ('window/showMessage
     (message "%s" (plist-get params :message)))
    ('cfgate/didChangeStatus
     (setq cfgate--status params)
     (force-mode-line-update t))
    (_ nil)))


(defun cfgate--state-words (state)
  "How STATE, a `cfgate/didChangeStatus' state, reads: \"rate limited\" for
\"rate_limited\", else STATE."
  (if (equal state "rate_limited") "rate limited" state))

(defun cfgate-mode-line ()
  "The daemon's state for the mode line: \" cfgate:ready\", \" cfgate:busy\",
\" cfgate:rate limited\" (face `cfgate-rate-limited'), \" cfgate:error\",
\" cfgate:unauthorized\" (face `error'); \" cfgate\" when no daemon runs."
  (let ((state (and (cfgate-running-p) (plist-get cfgate--status :state))))
    (if (stringp state)
        (propertize (concat " cfgate:" (cfgate--state-words state))
                    'help-echo (or (plist-get cfgate--status :message) "cfgate's daemon")
                    'face (cond ((member state '("error" "unauthorized")) 'error)
                                ((equal state "rate_limited") 'cfgate-rate-limited)))
      " cfgate")))

(defun cfgate--stderr-reason (proc)
  "The last line PROC (the daemon or its relay) wrote to stderr, or nil."
  ;; jsonrpc.el keeps the stderr buffer, renamed, in this property.
  (let* ((buffer (and proc (process-get proc 'jsonrpc-stderr)))
         (pipe (and (buffer-live-p buffer) (get-buffer-process buffer)))
         (deadline (+ (float-time) 2)))
    ;; The stderr pipe ends soon after the process: read it to its end first.
    (while (and pipe (process-live-p pipe) (< (float-time) deadline))
      (accept-process-output pipe 0.05))
    (when (buffer-live-p buffer)
      (with-current-buffer buffer
        (save-excursion
          (goto-char (point-max))
          (let (line)
            (while (and (not line) (not (bobp)))
              (forward-line -1)
              (let ((text (string-trim (buffer-substring-no-properties
                                        (line-beginning-position) (line-end-position)))))
                (unless (or (string-empty-p text)
                            (string-match-p "\\`Process .* \\(finished\\|exited\\)" text))
                  (setq line text))))
            line))))))

(defun cfgate--ended-error (conn)
  "The error of requests CONN's ending cut off.
It names the exit status and the last line the process wrote to stderr:
`serve --shared' says there why the shared daemon went away."
  (let* ((proc (jsonrpc--process conn))
         (status (and proc (process-exit-status proc)))
         (reason (cfgate--stderr-reason proc)))
    (list :code -1
          :message (concat (format "the daemon connection ended (cfgate exited with code %s)"
                                   status)
                           (if reason (concat ": " reason) ""))
          :data (list :hint "see cfgate's log in ~/.local/state/cfgate/ and M-x cfgate-status"))))

(defun cfgate--on-shutdown (conn)
  "Forget CONN, whose process ended, and fail its requests."
  (when (eq conn cfgate--connection)
    (setq cfgate--connection nil))
  (let ((err (cfgate--ended-error conn))
        (requests cfgate--requests))
    (setq cfgate--requests nil)
    (dolist (req requests)
      (cfgate--finish req err))))

(defun cfgate--executable ()
  "The daemon's executable file, or signal a `user-error'."
  (or (executable-find cfgate-executable)
      (user-error "cfgate: executable not found: %s (install cfgate or set `cfgate-executable')"
                  cfgate-executable)))

;;;###autoload
(defun cfgate-start ()
  "Start the daemon unless it is running; return the connection."
  (interactive)
  (if (cfgate-running-p)
      cfgate--connection
    (let* ((exe (cfgate--executable))
           (stderr (get-buffer-create "*cfgate stderr*"))
           (process-environment (append cfgate-environment process-environment))
           (proc (make-process :name "cfgate"
                               :command (cons exe cfgate-server-args)
                               :connection-type 'pipe
                               :coding 'utf-8-emacs-unix
                               :noquery t
                               :stderr stderr))
           (conn (make-instance 'jsonrpc-process-connection
                                :name "cfgate"
                                :process proc
                                :events-buffer-scrollback-size cfgate-events-buffer-size
                                :notification-dispatcher #'cfgate--handle-notification
                                :request-dispatcher #'cfgate--handle-request
                                :on-shutdown #'cfgate--on-shutdown)))
      (let ((stderr-proc (get-buffer-process stderr)))
        (when stderr-proc (set-process-query-on-exit-flag stderr-proc nil)))
      (condition-case err
          (progn
            (jsonrpc-request conn :initialize
                             (list :processId (emacs-pid)
                                   :clientInfo (list :name "Emacs" :version emacs-version)
                                   :rootUri nil
                                   :capabilities (make-hash-table)
                                   :initializationOptions (cfgate--settings-object))
                             :timeout 15)
            (jsonrpc-notify conn :initialized (make-hash-table))
            ;; Only changes are sent: until the first one, it is ready.
            (setq cfgate--status (list :state "ready")))
        (jsonrpc-error
         (let ((ended (and (not (process-live-p proc))
                           (plist-get (cfgate--ended-error conn) :message))))
           (ignore-errors (jsonrpc-shutdown conn))
           (user-error "cfgate: the daemon could not start: %s"
                       (or ended
                           (alist-get 'jsonrpc-error-message (cdr err))
                           (cadr err))))))
      (setq cfgate--process proc
            cfgate--connection conn)
      (cfgate--read-context-chars)
      conn)))

(defun cfgate--async-request (conn method params &rest args)
  "Send METHOD with PARAMS on CONN, like `jsonrpc-async-request' with ARGS.
Return the request id, which `$/cancelRequest' needs."
  ;; jsonrpc 1.0.14's `jsonrpc-async-request' returns nil; its worker returns
  ;; (ID TIMER).  Newer versions return the id from the public function.
  (if (fboundp 'jsonrpc--async-request-1)
      (car (apply #'jsonrpc--async-request-1 conn method params args))
    (apply #'jsonrpc-async-request conn method params args)))

(defun cfgate--finish (req err &optional result)
  "Complete REQ with ERR or RESULT, once."
  (unless (cfgate--req-done req)
    (setf (cfgate--req-done req) t)
    (setq cfgate--requests (delq req cfgate--requests))
    (when (cfgate--req-token req)
      (remhash (cfgate--req-token req) cfgate--progress-handlers))
    (if err
        (funcall (or (cfgate--req-on-error req) #'cfgate--report-error) err)
      (when (cfgate--req-on-result req)
        (funcall (cfgate--req-on-result req) result)))))

(cl-defun cfgate--request (method params &key on-result on-error on-progress)
  "Send METHOD (a keyword) with PARAMS (a plist) to the daemon.
Call ON-RESULT with the result or ON-ERROR with the error plist (default:
show it).  With ON-PROGRESS, the request carries a `workDoneToken' and
ON-PROGRESS gets each `$/progress' value.  Return a request for
`cfgate--cancel'."
  (let* ((conn (cfgate-start))
         (req (cfgate--req-make :on-result on-result :on-error on-error)))
    (when on-progress
      (let ((token (format "cfgate-%d-%d" (emacs-pid) (cl-incf cfgate--token-counter))))
        (setf (cfgate--req-token req) token)
        (setq params (append params (list :workDoneToken token)))
        (puthash token
                 (lambda (value)
                   (unless (cfgate--req-done req)
                     (funcall on-progress value)))
                 cfgate--progress-handlers)))
    (push req cfgate--requests)
    (setf (cfgate--req-id req)
          (cfgate--async-request
           conn method params
           :success-fn (lambda (result) (cfgate--finish req nil result))
           :error-fn (lambda (err)
                       ;; jsonrpc.el fails what is in flight with "Server died"
                       ;; when the process ends: say why instead.
                       (cfgate--finish req (if (jsonrpc-running-p conn)
                                               err
                                             (cfgate--ended-error conn))))
           :timeout nil))
    req))

(defun cfgate--cancel (req)
  "Cancel REQ: `$/cancelRequest', and none of its callbacks run afterwards."
  (when (and req (not (cfgate--req-done req)))
    (setf (cfgate--req-done req) t
          (cfgate--req-cancelled req) t)
    (setq cfgate--requests (delq req cfgate--requests))
    (when (cfgate--req-token req)
      (remhash (cfgate--req-token req) cfgate--progress-handlers))
    (when (and (cfgate--req-id req) (cfgate-running-p))
      (jsonrpc-notify cfgate--connection :$/cancelRequest
                      (list :id (cfgate--req-id req))))))

(defun cfgate--request-sync (method params &optional cancel-on-input)
  "Send METHOD with PARAMS and wait for the result.
Signal a `user-error' holding the message and hint if the request fails.
With CANCEL-ON-INPUT, return nil (and cancel the request) as soon as
there is input."
  (let* ((done nil) (result nil) (failure nil)
         (req (cfgate--request method params
                               :on-result (lambda (r) (setq result r done t))
                               :on-error (lambda (e) (setq failure e done t))))
         (deadline (+ (float-time) cfgate-sync-timeout)))
    (unwind-protect
        (while (not done)
          (cond
           ((and cancel-on-input (input-pending-p))
            (setq done 'input))
           ((> (float-time) deadline)
            (setq failure (list :message (format "no answer within %s s" cfgate-sync-timeout))
                  done t))
           (t (accept-process-output nil 0.05))))
      (cfgate--cancel req))
    (when failure
      (user-error "%s" (cfgate--format-error failure)))
    (and (not (eq done 'input)) result)))

;;;###autoload
(defun cfgate-shutdown ()
  "Stop the daemon (LSP shutdown and exit)."
  (interactive)
  (let ((conn cfgate--connection))
    (when (and conn (jsonrpc-running-p conn))
      (ignore-errors (jsonrpc-request conn :shutdown nil :timeout 2))
      (ignore-errors (jsonrpc-notify conn :exit nil))
      (let ((deadline (+ (float-time) 2)))
        (while (and (jsonrpc-running-p conn) (< (float-time) deadline))
          (accept-process-output nil 0.05))))
    (when conn
      (ignore-errors (jsonrpc-shutdown conn)))
    (setq cfgate--connection nil
          cfgate--process nil)))

;;;###autoload
(defun cfgate-restart ()
  "Stop the daemon connection and start it again with the current settings.
With the shared daemon (`serve --shared'), this restarts only this Emacs's
relay: the shared daemon keeps running; `cfgate stop' in a shell ends it,
and the next editor to connect starts a new one (needed after changing
the environment or config file it started with)."
  (interactive)
  (cfgate-shutdown)
  (cfgate-start)
  (when (called-interactively-p 'any)
    (message "cfgate: restarted")))

(defun cfgate--kill-emacs ()
  "End the daemon when Emacs exits."
  (when (process-live-p cfgate--process)
    ;; End of input makes the daemon exit at once.
    (ignore-errors (process-send-eof cfgate--process))
    (ignore-errors (delete-process cfgate--process))))

(add-hook 'kill-emacs-hook #'cfgate--kill-emacs)


;;;; Status and models

(defun cfgate--budget-line (budget)
  "A readable line for BUDGET, one of `cfgate/status''s `budgets'."
  (let ((limit (plist-get budget :limit))
        (cool-down (plist-get budget :cool_down_ms)))
    (concat (format "rate budget %s: %s, %s used in the last minute"
                    (plist-get budget :gateway)
                    (if (numberp limit)
                        (format "%s a minute%s" limit
                                (if (eq (plist-get budget :learned) t) " (learned from 429s)" ""))
                      "no limit known")
                    (or (plist-get budget :used_last_minute) 0))
            (if (numberp cool-down)
                (format ", rate limited: cooling down %d s" (ceiling cool-down 1000))
              ""))))

(defun cfgate--status-lines (status)
  "Readable lines for STATUS, a `cfgate/status' result."
  (let ((requests (plist-get status :requests))
        (settings-error (plist-get status :settings_error))
        (base-url (plist-get status :base_url))
        (state (and (cfgate-running-p) (plist-get cfgate--status :state)))
        (state-message (plist-get cfgate--status :message)))
    (delq nil
          (append
          (list
           (format "cfgate %s, up %ss" (plist-get status :version) (plist-get status :uptime_secs))
           (and (stringp state)
                (propertize
                 (concat "state: " (cfgate--state-words state)
                         (if (and (stringp state-message) (not (string-empty-p state-message)))
                             (format " (%s)" state-message)
                           ""))
                 'face (and (equal state "rate_limited") 'cfgate-rate-limited)))
           (if (eq (plist-get status :credentials_complete) t)
               "credentials: complete"
             (format "credentials: missing %s"
                     (mapconcat #'identity (plist-get status :missing) ", ")))
           (and (stringp settings-error) (format "settings error: %s" settings-error))
           (format "model: %s" (plist-get status :model))
           (format "base url: %s" (if (stringp base-url) base-url "(not set)"))
           (let ((clients (append (plist-get status :clients) nil)))
             (and clients
                  (format "clients (%d): %s" (length clients)
                          (mapconcat (lambda (c)
                                       (string-trim (format "%s %s"
                                                            (or (plist-get c :name) "?")
                                                            (or (plist-get c :version) ""))))
                                     clients ", "))))
           (let ((sessions (append (plist-get status :sessions) nil)))
             (format "sessions: %s"
                     (if sessions
                         (mapconcat (lambda (x) (format "%s (%s turns)" (plist-get x :name)
                                                        (plist-get x :turns)))
                                    sessions ", ")
                       "none"))))
          (mapcar #'cfgate--budget-line (append (plist-get status :budgets) nil))
          (list
           (format "requests: %s total, %s in flight, %s failed"
                   (plist-get requests :total)
                   (plist-get requests :in_flight)
                   (plist-get requests :failed)))))))

;;;###autoload
(defun cfgate-status ()
  "Show the daemon's status; return it as a plist."
  (interactive)
  (let ((status (cfgate--request-sync :cfgate/status (make-hash-table))))
    (when (called-interactively-p 'any)
      (message "%s" (mapconcat #'identity (cfgate--status-lines status) "\n")))
    status))

;;;###autoload
(defun cfgate-set-model (model)
  "Use MODEL for this Emacs's requests (workspace/didChangeConfiguration)."
  (interactive (list (read-string "cfgate model: ")))
  (when (string-empty-p (string-trim model))
    (user-error "cfgate: no model given"))
  (setq cfgate-settings
        (if (keywordp (car cfgate-settings))
            (plist-put (copy-sequence cfgate-settings) :model model)
          (cons (cons 'model model) (assq-delete-all 'model (copy-alist cfgate-settings)))))
  (when (cfgate-running-p)
    (jsonrpc-notify cfgate--connection :workspace/didChangeConfiguration
                    (list :settings (list :cfgate (list :model model)))))
  (message "cfgate: model %s" model)
  model)

(autoload 'cfgate-select-model "cfgate-models" nil t)


;;;; Chat

(defvar cfgate-chat-buffer-name "*cfgate-chat*"
  "Name of the chat buffer.")

(defvar-local cfgate--chat-request nil
  "The request whose answer streams into this chat buffer.")
(defvar-local cfgate--chat-answer-marker nil
  "Where the streamed answer goes.")
(defvar-local cfgate--chat-heading-marker nil
  "Start of the answer's section (removed if the request fails).")
(defvar-local cfgate--chat-streamed nil
  "Non-nil once content streamed into the current answer.")
(defvar-local cfgate--chat-session nil
  "The session this chat buffer continues, or nil for a plain chat.")

(defvar cfgate-chat-mode-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "C-c C-c") #'cfgate-chat-send)
    (define-key map (kbd "C-c C-k") #'cfgate-chat-cancel)
    (define-key map (kbd "C-c C-n") #'cfgate-chat-new)
    map)
  "Keymap of `cfgate-chat-mode'.")

(define-derived-mode cfgate-chat-mode text-mode "cfgate-chat"
  "Chat with the model through cfgate.
Write under the last heading `cfgate-chat-user-heading' and send with
\\[cfgate-chat-send]; \\[cfgate-chat-cancel] stops an answer.  A plain chat
sends the whole conversation each time, as the buffer holds it; a chat on a
session (`cfgate-chat-session', \\[universal-argument] \\[cfgate-chat]) sends only
the new message, and the daemon adds the stored history.

\\{cfgate-chat-mode-map}"
  (setq-local font-lock-defaults
              (list (list (list (concat "^\\(?:" (regexp-quote cfgate-chat-user-heading)
                                        "\\|" (regexp-quote cfgate-chat-assistant-heading)
                                        "\\)[ \t]*$")
                                0 ''cfgate-chat-heading-face)))))

(defun cfgate-chat-messages ()
  "The conversation in the current chat buffer as a list of message plists.
Also return, as second and third values in a list, the role and text of
the last section: (MESSAGES LAST-ROLE LAST-TEXT)."
  (let ((sections nil) (current nil))
    (save-excursion
      (goto-char (point-min))
      (while (not (eobp))
        (let ((line (buffer-substring-no-properties (line-beginning-position) (line-end-position))))
          (cond
           ((equal (string-trim line) cfgate-chat-user-heading)
            (setq current (list "user")) (push current sections))
           ((equal (string-trim line) cfgate-chat-assistant-heading)
            (setq current (list "assistant")) (push current sections))
           (current (setcdr current (cons line (cdr current))))))
        (forward-line 1)))
    (setq sections (nreverse sections))
    (let ((messages (when (and cfgate-chat-system-prompt
                               (not (string-empty-p cfgate-chat-system-prompt)))
                      (list (list :role "system" :content cfgate-chat-system-prompt))))
          (last-role nil) (last-text ""))
      (dolist (section sections)
        (let ((text (string-trim (mapconcat #'identity (reverse (cdr section)) "\n"))))
          (setq last-role (car section) last-text text)
          (unless (string-empty-p text)
            (setq messages (append messages (list (list :role (car section) :content text)))))))
      (list messages last-role last-text))))

(defun cfgate--session-name (text)
  "A session name the daemon accepts made from TEXT, or nil.
Characters other than letters, digits, `.', `_' and `-' become `-'."
  (when (stringp text)
    (let ((name (replace-regexp-in-string "\\`\\.+" ""
                                          (replace-regexp-in-string "[^A-Za-z0-9._-]" "-" text))))
      (unless (string-empty-p name)
        (substring name 0 (min 64 (length name)))))))

(defun cfgate--default-session ()
  "The session named by `cfgate-chat-session', or nil."
  (cfgate--session-name
   (if (functionp cfgate-chat-session)
       (funcall cfgate-chat-session
                (or (and (fboundp 'project-current)
                         (let ((project (project-current)))
                           (and project (fboundp 'project-root) (project-root project))))
                    default-directory))
     cfgate-chat-session)))

(defun cfgate--chat-buffer (&optional session)
  "The chat buffer of SESSION (nil: the plain chat), created if needed."
  (let ((name (if session (format "*cfgate-chat: %s*" session) cfgate-chat-buffer-name)))
    (or (get-buffer name)
        (with-current-buffer (get-buffer-create name)
          (cfgate-chat-mode)
          (setq cfgate--chat-session session)
          (insert cfgate-chat-user-heading "\n\n")
          (add-hook 'kill-buffer-hook #'cfgate-chat-cancel nil t)
          (current-buffer)))))

(defun cfgate--current-chat-buffer ()
  "The chat buffer that is current, else the plain chat buffer."
  (if (derived-mode-p 'cfgate-chat-mode) (current-buffer) (cfgate--chat-buffer)))

(defun cfgate--chat-show-error (pos err)
  "Show ERR in the chat buffer after POS (an overlay, so a resend leaves it out)."
  (remove-overlays (point-min) (point-max) 'cfgate-error t)
  (let ((ov (make-overlay pos pos nil t nil)))
    (overlay-put ov 'cfgate-error t)
    (overlay-put ov 'after-string
                 (propertize (concat "\n" (cfgate--format-error err)) 'face 'error))))

(defun cfgate-chat-error-text (&optional buffer)
  "The error shown in chat BUFFER (default: the current one), or nil."
  (with-current-buffer (or buffer (current-buffer))
    (let ((ov (cl-find-if (lambda (o) (overlay-get o 'cfgate-error))
                          (overlays-in (point-min) (point-max)))))
      (and ov (string-trim (substring-no-properties (overlay-get ov 'after-string)))))))

(defun cfgate--show-waiting (pos message)
  "Show MESSAGE, a `$/progress' report's text (\"rate limited: waiting 3 s\"),
at POS, where the answer will stream in, and in the echo area.  An overlay,
not text: it is never part of the answer nor sent again."
  (cfgate--clear-waiting)
  (let ((ov (make-overlay pos pos nil t nil))
        (text (concat "cfgate: " message)))
    (overlay-put ov 'cfgate-waiting t)
    (overlay-put ov 'after-string (propertize text 'face 'cfgate-rate-limited))
    (let ((message-log-max nil))
      (message "%s" text))))

(defun cfgate--clear-waiting ()
  "Remove the waiting note from the current buffer, and from the echo area
while it still shows it."
  (let ((shown (cfgate-chat-waiting-text)))
    (when shown
      (remove-overlays (point-min) (point-max) 'cfgate-waiting t)
      (when (equal (current-message) shown)
        (let ((message-log-max nil))
          (message nil))))))

(defun cfgate-chat-waiting-text (&optional buffer)
  "The waiting note shown in BUFFER (default: the current one), or nil."
  (with-current-buffer (or buffer (current-buffer))
    (let ((ov (cl-find-if (lambda (o) (overlay-get o 'cfgate-waiting))
                          (overlays-in (point-min) (point-max)))))
      (and ov (substring-no-properties (overlay-get ov 'after-string))))))

(defun cfgate--insert-following (marker text)
  "Insert TEXT at MARKER; windows whose point was at the end follow it."
  (when (and (marker-buffer marker) (not (string-empty-p text)))
    (with-current-buffer (marker-buffer marker)
      (let* ((end (point-max))
             (windows (cl-remove-if-not (lambda (w) (= (window-point w) end))
                                        (get-buffer-window-list nil nil t)))
             (follow (= (point) end)))
        (save-excursion
          (goto-char marker)
          (insert text))
        (when follow (goto-char (point-max)))
        (dolist (w windows) (set-window-point w (point-max)))))))

(defun cfgate--chat-finish-turn (&optional err)
  "End the current turn: a new heading for the next message.
With ERR (an answer cut short), show why under what arrived."
  (cfgate--clear-waiting)
  (when (and err cfgate--chat-answer-marker)
    (cfgate--chat-show-error (marker-position cfgate--chat-answer-marker) err))
  (when cfgate--chat-answer-marker
    (cfgate--insert-following cfgate--chat-answer-marker
                              (concat "\n\n" cfgate-chat-user-heading "\n\n")))
  (setq cfgate--chat-request nil
        cfgate--chat-answer-marker nil
        cfgate--chat-heading-marker nil))

(defun cfgate--chat-drop-turn (&optional err)
  "Remove the failed answer's section; the message stays, to send again.
With ERR, show it under the message."
  (cfgate--clear-waiting)
  (when cfgate--chat-heading-marker
    (save-excursion
      (delete-region cfgate--chat-heading-marker (point-max))
      (goto-char (point-max))
      (unless (bolp) (insert "\n"))))
  (when err
    (save-excursion
      (goto-char (point-max))
      (skip-chars-backward " \t\n")
      (cfgate--chat-show-error (point) err)))
  (setq cfgate--chat-request nil
        cfgate--chat-answer-marker nil
        cfgate--chat-heading-marker nil))

(defun cfgate-chat-busy-p (&optional buffer)
  "Non-nil while an answer streams into BUFFER.
BUFFER defaults to the current chat buffer, else the plain chat buffer."
  (let ((buffer (or buffer
                    (and (derived-mode-p 'cfgate-chat-mode) (current-buffer))
                    (get-buffer cfgate-chat-buffer-name))))
    (and (buffer-live-p buffer)
         (buffer-local-value 'cfgate--chat-request buffer)
         t)))

(defun cfgate--turn-messages (messages session)
  "What a turn sends of MESSAGES: all of them for a plain chat; with SESSION
the system message and those after the last answer (the daemon adds the
stored history, so sending it again would store every turn twice)."
  (if (not session)
      messages
    (let ((last-answer (cl-position "assistant" messages :from-end t :test #'equal
                                    :key (lambda (m) (plist-get m :role)))))
      (cl-loop for m in messages
               for i from 0
               when (or (equal (plist-get m :role) "system")
                        (null last-answer) (> i last-answer))
               collect m))))

(defun cfgate-chat-send ()
  "Send the conversation in the chat buffer; the answer streams in below."
  (interactive)
  (with-current-buffer (cfgate--current-chat-buffer)
    (when cfgate--chat-request
      (user-error "cfgate: an answer is still streaming (C-c C-k stops it)"))
    (remove-overlays (point-min) (point-max) 'cfgate-error t)
    (pcase-let ((`(,messages ,last-role ,last-text) (cfgate-chat-messages))
                (buffer (current-buffer)))
      (unless (and (equal last-role "user") (not (string-empty-p last-text)))
        (user-error "cfgate: write a message under \"%s\" first" cfgate-chat-user-heading))
      (let ((inhibit-read-only t))
        (save-excursion
          (goto-char (point-max))
          (skip-chars-backward " \t\n")
          (delete-region (point) (point-max))
          (setq cfgate--chat-heading-marker (copy-marker (point)))
          (insert "\n\n" cfgate-chat-assistant-heading "\n\n")
          (setq cfgate--chat-answer-marker (copy-marker (point) t))))
      (dolist (w (get-buffer-window-list buffer nil t))
        (set-window-point w (point-max)))
      (goto-char (point-max))
      (setq cfgate--chat-streamed nil)
      (let (req)
        (setq req
              (cfgate--request
               :cfgate/chat (append (list :messages (vconcat (cfgate--turn-messages
                                                             messages cfgate--chat-session)))
                                    (and cfgate--chat-session
                                         (list :session cfgate--chat-session))
                                    cfgate-chat-params)
               :on-progress
               (lambda (value)
                 (when (and (buffer-live-p buffer) (equal (plist-get value :kind) "report"))
                   (let ((content (plist-get value :content))
                         (note (plist-get value :message)))
                     (with-current-buffer buffer
                       (when (eq cfgate--chat-request req)
                         (cond
                          ((stringp content)
                           (unless cfgate--chat-streamed (cfgate--clear-waiting))
                           (setq cfgate--chat-streamed t)
                           (cfgate--insert-following cfgate--chat-answer-marker content))
                          ;; e.g. "rate limited: waiting 3 s", until the answer starts.
                          ((and (stringp note) (not cfgate--chat-streamed)
                                cfgate--chat-answer-marker)
                           (cfgate--show-waiting (marker-position cfgate--chat-answer-marker)
                                                 note))))))))
               :on-result
               (lambda (result)
                 (when (buffer-live-p buffer)
                   (with-current-buffer buffer
                     (when (eq cfgate--chat-request req)
                       (let ((content (plist-get result :content)))
                         (when (and (not cfgate--chat-streamed) (stringp content))
                           (cfgate--insert-following cfgate--chat-answer-marker content)))
                       (cfgate--chat-finish-turn)))))
               :on-error
               (lambda (err)
                 (when (buffer-live-p buffer)
                   (with-current-buffer buffer
                     (when (eq cfgate--chat-request req)
                       (cond
                        ((cfgate--cancelled-p err) (cfgate--chat-finish-turn))
                        ;; Part of the answer is shown: it stays, the reason under it.
                        (cfgate--chat-streamed (cfgate--chat-finish-turn err))
                        (t (cfgate--chat-drop-turn err))))))
                 (cfgate--report-error err))))
        (unless (cfgate--req-done req)
          (setq cfgate--chat-request req))))))

(defun cfgate-chat-cancel ()
  "Stop the answer streaming into the chat buffer; what arrived stays."
  (interactive)
  (let ((buffer (if (derived-mode-p 'cfgate-chat-mode)
                    (current-buffer)
                  (get-buffer cfgate-chat-buffer-name))))
    (when (buffer-live-p buffer)
      (with-current-buffer buffer
        (when cfgate--chat-request
          (cfgate--cancel cfgate--chat-request)
          (cfgate--chat-finish-turn))))))

(defun cfgate-chat-new ()
  "Start a new plain conversation in the plain chat buffer; return it.
A session's stored history stays with the daemon."
  (interactive)
  (with-current-buffer (cfgate--chat-buffer)
    (when (called-interactively-p 'any)
      (pop-to-buffer (current-buffer)))
    (cfgate-chat-cancel)
    (let ((inhibit-read-only t))
      (erase-buffer)
      (insert cfgate-chat-user-heading "\n\n"))
    (current-buffer)))

;;;###autoload
(defun cfgate-sessions ()
  "Pick a stored session with `completing-read' and open the chat on it.
The same as \\[universal-argument] \\[cfgate-chat]."
  (interactive)
  (pop-to-buffer (cfgate-chat nil nil (cfgate-read-session))))

(defun cfgate-read-session ()
  "Read a session name with `completing-read' over `cfgate/sessions'.
A name not in the list starts a new session."
  (let* ((result (cfgate--request-sync :cfgate/sessions (make-hash-table)))
         (names (mapcar (lambda (s) (plist-get s :name))
                        (append (plist-get result :sessions) nil)))
         (default (cfgate--default-session))
         (name (completing-read (format-prompt "cfgate session" default)
                                names nil nil nil nil default)))
    (or (cfgate--session-name (string-trim name))
        (user-error "cfgate: no session name given"))))

(defun cfgate--history-text (messages)
  "The chat buffer's text for stored MESSAGES (system messages left out)."
  (concat
   (mapconcat (lambda (m)
                (let ((role (plist-get m :role)) (content (plist-get m :content)))
                  (if (and (stringp content) (not (string-empty-p content))
                           (member role '("user" "assistant")))
                      (concat (if (equal role "user")
                                  cfgate-chat-user-heading
                                cfgate-chat-assistant-heading)
                              "\n\n" content "\n\n")
                    "")))
              (append messages nil) "")
   cfgate-chat-user-heading "\n\n"))

(defun cfgate--chat-load-session ()
  "Fill the current chat buffer with its session's stored turns.
Every client's turns are there; a message being written under the last
heading is kept."
  (pcase-let* ((`(,_ ,last-role ,draft) (cfgate-chat-messages))
               (result (cfgate--request-sync :cfgate/session
                                             (list :name cfgate--chat-session)))
               (inhibit-read-only t))
    (erase-buffer)
    (insert (cfgate--history-text (plist-get result :messages)))
    (when (and (equal last-role "user") (not (string-empty-p draft)))
      (insert draft))
    (dolist (w (get-buffer-window-list (current-buffer) nil t))
      (set-window-point w (point-max)))
    (goto-char (point-max))))

;;;###autoload
(defun cfgate-chat (&optional prompt new session)
  "Open a chat buffer; with PROMPT, add it as your message and send.
Interactively, in the chat buffer this sends what you wrote; elsewhere it
asks for PROMPT (empty: just show the chat).  With NEW (\\[universal-argument]
\\[universal-argument]), start a new plain conversation first.  With SESSION
\(\\[universal-argument], read with `completing-read'), continue that session:
its stored turns, whichever client made them, are loaded into the buffer and
only the new message is sent.  Without either, the chat buffer's own session,
else `cfgate-chat-session'.  Return the chat buffer."
  (interactive
   (let* ((session (and (equal current-prefix-arg '(4)) (cfgate-read-session)))
          (new (equal current-prefix-arg '(16))))
     (list (unless (or (derived-mode-p 'cfgate-chat-mode) session)
             (read-string "cfgate chat: "))
           new session)))
  (when (and session (not (equal (cfgate--session-name session) session)))
    (user-error "cfgate: invalid session name %S (1 to 64 letters, digits, `.', `_' or `-')"
                session))
  (let* ((from-chat (derived-mode-p 'cfgate-chat-mode))
         (session (or session
                      (and (not new)
                           (if from-chat cfgate--chat-session (cfgate--default-session)))))
         (from-chat (and from-chat (equal cfgate--chat-session session)))
         (buffer (if new (cfgate-chat-new) (cfgate--chat-buffer session))))
    (when (called-interactively-p 'any)
      (pop-to-buffer buffer))
    (with-current-buffer buffer
      (when (and session (not cfgate--chat-request))
        (cfgate--chat-load-session))
      (cond
       ((and prompt (not (string-empty-p (string-trim prompt))))
        (when cfgate--chat-request
          (user-error "cfgate: an answer is still streaming"))
        (let ((inhibit-read-only t))
          (goto-char (point-max))
          (unless (equal (nth 1 (cfgate-chat-messages)) "user")
            (skip-chars-backward " \t\n")
            (delete-region (point) (point-max))
            (insert "\n\n" cfgate-chat-user-heading "\n\n"))
          (insert prompt))
        (cfgate-chat-send))
       ((and from-chat (not new))
        (cfgate-chat-send))
       (t (goto-char (point-max)))))
    buffer))


;;;; Ask about the region

(defvar cfgate-ask-buffer-name "*cfgate-ask*"
  "Name of the buffer `cfgate-ask-region' answers in.")

(defvar-local cfgate--ask-request nil
  "The request answering in this buffer.")

(define-derived-mode cfgate-answer-mode special-mode "cfgate-answer"
  "A streamed answer from cfgate; \\[quit-window] closes it."
  (setq-local truncate-lines nil)
  (add-hook 'kill-buffer-hook #'cfgate--ask-cancel nil t))

(defun cfgate--ask-cancel ()
  "Cancel the request answering in the current buffer."
  (when cfgate--ask-request
    (cfgate--cancel cfgate--ask-request)
    (setq cfgate--ask-request nil)))

(defun cfgate--language ()
  "A language name for the current buffer, from its major mode."
  (let ((name (symbol-name major-mode)))
    (replace-regexp-in-string "\\(?:-ts\\)?-mode\\'" "" name)))

;;;###autoload
(defun cfgate-ask-region (beg end instruction)
  "Ask about the text between BEG and END with INSTRUCTION.
The answer streams into the buffer `cfgate-ask-buffer-name', which is
returned."
  (interactive
   (if (use-region-p)
       (list (region-beginning) (region-end) (read-string "cfgate ask: "))
     (list (point-min) (point-max) (read-string "cfgate ask (whole buffer): "))))
  (when (string-empty-p (string-trim instruction))
    (user-error "cfgate: no instruction given"))
  (let* ((text (buffer-substring-no-properties beg end))
         (content (format "%s\n\n```%s\n%s\n```" instruction (cfgate--language) text))
         (messages (append (when (and cfgate-chat-system-prompt
                                      (not (string-empty-p cfgate-chat-system-prompt)))
                             (list (list :role "system" :content cfgate-chat-system-prompt)))
                           (list (list :role "user" :content content))))
         (buffer (get-buffer-create cfgate-ask-buffer-name))
         (marker nil) (streamed nil))
    (with-current-buffer buffer
      (cfgate--ask-cancel)
      (cfgate-answer-mode)
      (let ((inhibit-read-only t))
        (erase-buffer)
        (setq marker (copy-marker (point-min) t)))
      (setq-local cfgate--ask-request
                  (cfgate--request
                   :cfgate/chat (append (list :messages (vconcat messages)) cfgate-chat-params)
                   :on-progress
                   (lambda (value)
                     (let ((piece (plist-get value :content))
                           (note (plist-get value :message)))
                       (when (buffer-live-p buffer)
                         (with-current-buffer buffer
                           (cond
                            ((stringp piece)
                             (unless streamed (cfgate--clear-waiting))
                             (setq streamed t)
                             (let ((inhibit-read-only t))
                               (cfgate--insert-following marker piece)))
                            ((and (stringp note) (not streamed))
                             (cfgate--show-waiting (marker-position marker) note)))))))
                   :on-result
                   (lambda (result)
                     (when (buffer-live-p buffer)
                       (with-current-buffer buffer
                         (setq cfgate--ask-request nil)
                         (cfgate--clear-waiting)
                         (let ((content (plist-get result :content))
                               (inhibit-read-only t))
                           (when (and (not streamed) (stringp content))
                             (cfgate--insert-following marker content))))))
                   :on-error
                   (lambda (err)
                     (when (buffer-live-p buffer)
                       (with-current-buffer buffer
                         (setq cfgate--ask-request nil)
                         (cfgate--clear-waiting)
                         (unless (cfgate--cancelled-p err)
                           (let ((inhibit-read-only t))
                             (goto-char (point-max))
                             (insert "\n" (cfgate--format-error err) "\n")))))
                     (cfgate--report-error err)))))
    (display-buffer buffer)
    buffer))

(defun cfgate-ask-busy-p ()
  "Non-nil while an answer streams into the ask buffer."
  (let ((buffer (get-buffer cfgate-ask-buffer-name)))
    (and (buffer-live-p buffer) (buffer-local-value 'cfgate--ask-request buffer) t)))


;;;; Completion

(defvar cfgate--context-chars nil
  "The daemon's `completion_context_chars', read from `cfgate/status'.")

(defun cfgate--read-context-chars ()
  "Read the daemon's `completion_context_chars' (after a start or a change)."
  (when (cfgate-running-p)
    (cfgate--request :cfgate/status (make-hash-table)
                     :on-result (lambda (status)
                                  (let ((n (plist-get status :completion_context_chars)))
                                    (when (and (integerp n) (> n 0))
                                      (setq cfgate--context-chars n))))
                     :on-error #'ignore)))

(defun cfgate-context-around (pos &optional total)
  "The text around POS sent with a completion: (PREFIX . SUFFIX).
TOTAL chars (default: the daemon's `completion_context_chars') are split as
the daemon splits them: about three quarters before POS, the rest after; a
short side leaves its share to the other; a cut side is cut at a line break."
  (let* ((total (or total cfgate--context-chars 8000))
         (before (buffer-substring-no-properties (max (point-min) (- pos total)) pos))
         (after (buffer-substring-no-properties pos (min (point-max) (+ pos total))))
         (before-share (/ (* total 3) 4))
         (before-budget (max before-share (- total (min (length after) (- total before-share)))))
         (after-budget (- total (min (length before) before-budget))))
    (when (> (length before) before-budget)
      (setq before (substring before (- (length before) before-budget)))
      (when (string-match "\n" before)
        (setq before (substring before (match-end 0)))))
    (when (> (length after) after-budget)
      (setq after (substring after 0 after-budget))
      (let ((nl (cl-position ?\n after :from-end t)))
        (when nl (setq after (substring after 0 (1+ nl))))))
    (cons before after)))

(defun cfgate--project-root ()
  "The current project's root directory, or nil."
  (let ((project (and (fboundp 'project-current) (project-current))))
    (and project (fboundp 'project-root) (project-root project))))

(defun cfgate--complete-params ()
  "Params of a `cfgate/complete' request for point."
  (let* ((context (cfgate-context-around (point))))
    (append (list :prefix (car context) :suffix (cdr context) :language (cfgate--language))
            (when buffer-file-name
              ;; Relative to the project's root, as the other editors send it.
              (list :path (file-relative-name buffer-file-name
                                              (or (cfgate--project-root) default-directory))))
            (when cfgate-complete-max-tokens
              (list :max_tokens cfgate-complete-max-tokens)))))

;;;###autoload
(defun cfgate-complete-at-point ()
  "Completion-at-point function offering the model's completion at point.
The candidate is the symbol before point followed by the `cfgate/complete'
text.  It waits for the answer (input cancels it), so add it to
`completion-at-point-functions' only where an explicit
\\[completion-at-point] calls it."
  (let* ((end (point))
         (start (save-excursion (skip-syntax-backward "w_") (point)))
         (result (condition-case err
                     (cfgate--request-sync :cfgate/complete (cfgate--complete-params)
                                           (not noninteractive))
                   (user-error (message "%s" (error-message-string err)) nil)))
         (text (plist-get result :text)))
    (when (and (stringp text) (not (string-empty-p text)))
      (list start end
            (list (concat (buffer-substring-no-properties start end) text))
            :exclusive 'no
            :annotation-function (lambda (_) " cfgate")))))


;;;; Requests from the daemon

(defun cfgate--handle-request (_conn method params)
  "Answer the daemon's request METHOD with PARAMS.
`workspace/applyEdit' is held for review: the edit is shown as a diff when
the command ends, and applied only if the user agrees."
  (pcase method
    ('workspace/applyEdit
     (let* ((edit (plist-get params :edit))
            (changes (plist-get edit :changes)))
       (cl-loop for (key edits) on changes by #'cddr
                do (puthash (substring (symbol-name key) 1) edits cfgate--pending-edits))
       (list :applied :json-false
             :failureReason "held for review: the user sees the diff first")))
    (_ (signal 'jsonrpc-error
               (list (cons 'jsonrpc-error-code -32601)
                     (cons 'jsonrpc-error-message (format "unknown method %s" method)))))))

(autoload 'cfgate-explain-region "cfgate-actions" nil t)
(autoload 'cfgate-fix-region "cfgate-actions" nil t)
(autoload 'cfgate-document-region "cfgate-actions" nil t)


;;;; Inline suggestion

(defvar-local cfgate--suggestion nil
  "The inline suggestion: a plist (:overlay :text :request :done).")

(defvar cfgate-suggestion-map
  (let ((map (make-sparse-keymap)))
    (define-key map (kbd "TAB") #'cfgate-accept-suggestion)
    (define-key map (kbd "<tab>") #'cfgate-accept-suggestion)
    (define-key map (kbd "C-g") #'cfgate-dismiss-suggestion)
    (define-key map (kbd "M-<right>") #'cfgate-accept-suggestion-word)
    (define-key map (kbd "C-M-<right>") #'cfgate-accept-suggestion-line)
    map)
  "Keys active while an inline suggestion is shown.")

(define-minor-mode cfgate--suggestion-mode
  "Internal: on while an inline suggestion is shown, for `cfgate-suggestion-map'."
  :lighter nil
  :keymap cfgate-suggestion-map)

(defun cfgate--render-suggestion ()
  "Show the suggestion's text after point."
  (when cfgate--suggestion
    (let ((ov (plist-get cfgate--suggestion :overlay))
          (text (plist-get cfgate--suggestion :text)))
      (when (overlay-buffer ov)
        (if (string-empty-p text)
            (overlay-put ov 'after-string nil)
          (let ((shown (propertize text 'face 'cfgate-suggestion-face)))
            (put-text-property 0 1 'cursor t shown)
            (overlay-put ov 'after-string shown)))))))

(defun cfgate-suggestion-text ()
  "The text of the inline suggestion shown, or nil."
  (and cfgate--suggestion (plist-get cfgate--suggestion :text)))

(defun cfgate-suggestion-done-p ()
  "Non-nil if the inline suggestion is complete."
  (and cfgate--suggestion (plist-get cfgate--suggestion :done)))

(defun cfgate-dismiss-suggestion ()
  "Remove the inline suggestion and cancel its request."
  (interactive)
  (when cfgate--suggestion
    (cfgate--cancel (plist-get cfgate--suggestion :request))
    (delete-overlay (plist-get cfgate--suggestion :overlay))
    (setq cfgate--suggestion nil))
  (remove-hook 'pre-command-hook #'cfgate--suggestion-pre-command t)
  (when cfgate--suggestion-mode
    (cfgate--suggestion-mode -1)))

(defun cfgate--suggestion-pre-command ()
  "Remove the suggestion before any command but accepting it."
  (unless (memq this-command '(cfgate-accept-suggestion cfgate-suggest
                               cfgate-accept-suggestion-word cfgate-accept-suggestion-line))
    (cfgate-dismiss-suggestion)))

;;;###autoload
(defun cfgate-suggest ()
  "Ask for a suggestion at point; it streams in as an overlay.
Accept it with \\[cfgate-accept-suggestion] (TAB while it is shown); any
other command removes it and cancels its request."
  (interactive)
  (cfgate-dismiss-suggestion)
  (cfgate-start)
  (let* ((buffer (current-buffer))
         (ov (make-overlay (point) (point) nil nil t))
         (suggestion (list :overlay ov :text "" :request nil :done nil :taken 0)))
    (overlay-put ov 'priority 1000)
    (overlay-put ov 'cfgate t)
    (setq cfgate--suggestion suggestion)
    (add-hook 'pre-command-hook #'cfgate--suggestion-pre-command nil t)
    (cfgate--suggestion-mode 1)
    (let ((req
           (cfgate--request
            :cfgate/complete (cfgate--complete-params)
            :on-progress
            (lambda (value)
              (let ((piece (plist-get value :content)))
                (when (and (stringp piece) (buffer-live-p buffer))
                  (with-current-buffer buffer
                    (when (eq cfgate--suggestion suggestion)
                      (plist-put suggestion :text (concat (plist-get suggestion :text) piece))
                      (cfgate--render-suggestion))))))
            :on-result
            (lambda (result)
              (when (buffer-live-p buffer)
                (with-current-buffer buffer
                  (when (eq cfgate--suggestion suggestion)
                    (let ((text (plist-get result :text)))
                      (when (stringp text)
                        ;; Without what was accepted word by word or line by line.
                        (plist-put suggestion :text
                                   (substring text (min (length text)
                                                        (plist-get suggestion :taken))))))
                    (setq cfgate--inline-error nil)
                    (plist-put suggestion :done t)
                    (if (string-empty-p (plist-get suggestion :text))
                        (cfgate-dismiss-suggestion)
                      (cfgate--render-suggestion))))))
            :on-error
            (lambda (err)
              (when (buffer-live-p buffer)
                (with-current-buffer buffer
                  (when (eq cfgate--suggestion suggestion)
                    (cfgate-dismiss-suggestion))))
              (cfgate--report-inline-error err)))))
      (when (eq cfgate--suggestion suggestion)
        (plist-put suggestion :request req)))))

(defun cfgate-accept-suggestion ()
  "Insert the inline suggestion at its place."
  (interactive)
  (let* ((suggestion cfgate--suggestion)
         (text (and suggestion (plist-get suggestion :text)))
         (ov (and suggestion (plist-get suggestion :overlay))))
    (unless (and text (not (string-empty-p text)) (overlay-buffer ov))
      (user-error "cfgate: no suggestion to accept"))
    (let ((pos (overlay-start ov)))
      ;; Accepting while it streams takes what is shown and stops the rest.
      (cfgate-dismiss-suggestion)
      (goto-char pos)
      (insert text))))

(defun cfgate-suggestion-part (text kind)
  "The part of TEXT that accepting KIND inserts.
KIND `word': the next word with the white space before it (or a run of
punctuation); `line': the rest of the first line (or, when TEXT starts a
new line, that line break and the next line); else all of TEXT."
  (pcase kind
    ('word (if (string-match "\\`[ \t\n]*\\(?:\\(?:\\sw\\|\\s_\\)+\\|[^ \t\n[:alnum:]_]+\\)" text)
               (match-string 0 text)
             text))
    ('line (if (string-prefix-p "\n" text)
               (concat "\n" (car (split-string (substring text 1) "\n")))
             (car (split-string text "\n"))))
    (_ text)))

(defun cfgate--accept-part (kind)
  "Insert the KIND part of the suggestion (see `cfgate-suggestion-part').
The rest stays shown after point."
  (let* ((suggestion cfgate--suggestion)
         (text (and suggestion (plist-get suggestion :text)))
         (ov (and suggestion (plist-get suggestion :overlay))))
    (unless (and text (not (string-empty-p text)) (overlay-buffer ov))
      (user-error "cfgate: no suggestion to accept"))
    (let ((part (cfgate-suggestion-part text kind)))
      (if (equal part text)
          (cfgate-accept-suggestion)
        (goto-char (overlay-start ov))
        (insert part)
        (move-overlay ov (point) (point))
        (plist-put suggestion :taken (+ (plist-get suggestion :taken) (length part)))
        (plist-put suggestion :text (substring text (length part)))
        (cfgate--render-suggestion)))))

(defun cfgate-accept-suggestion-word ()
  "Insert the suggestion's next word; the rest stays shown."
  (interactive)
  (cfgate--accept-part 'word))

(defun cfgate-accept-suggestion-line ()
  "Insert the rest of the suggestion's line; the rest stays shown."
  (interactive)
  (cfgate--accept-part 'line))

(defun cfgate--report-inline-error (err)
  "Show ERR of an inline suggestion as one line, once until it changes.
Typing goes on undisturbed; chat and ask show the whole error and hint."
  (unless (cfgate--cancelled-p err)
    (let ((line (car (split-string (cfgate--format-error err) "\n"))))
      (unless (equal line cfgate--inline-error)
        (setq cfgate--inline-error line)
        (let ((message-truncate-lines t))
          (message "%s" line))))))

(defvar-local cfgate--idle-timer nil
  "Timer of `cfgate-inline-mode'.")

(defun cfgate--idle-suggest (buffer tick pos)
  "Suggest in BUFFER if it is current, unchanged since TICK, with point at POS."
  (when (and (eq (current-buffer) buffer)
             (= (buffer-chars-modified-tick) tick)
             (= (point) pos)
             (not cfgate--suggestion)
             (not (minibufferp)))
    (condition-case err
        (cfgate-suggest)
      (user-error (message "%s" (error-message-string err))))))

(defun cfgate--inline-post-command ()
  "After a command that inserted text, ask for a suggestion when idle."
  (when (timerp cfgate--idle-timer)
    (cancel-timer cfgate--idle-timer)
    (setq cfgate--idle-timer nil))
  (when (and (memq this-command '(self-insert-command newline org-self-insert-command))
             (not buffer-read-only))
    (setq cfgate--idle-timer
          (run-with-idle-timer cfgate-idle-delay nil #'cfgate--idle-suggest
                               (current-buffer) (buffer-chars-modified-tick) (point)))))

;;;###autoload
(define-minor-mode cfgate-mode-line-mode
  "Show the cfgate daemon's state in every mode line.
The same text as `cfgate-inline-mode''s lighter (` cfgate:ready',
` cfgate:busy', ...), from the daemon's `cfgate/didChangeStatus', for
buffers without `cfgate-inline-mode'."
  :global t
  :lighter (:eval (unless cfgate-inline-mode (cfgate-mode-line))))

;;;###autoload
(define-minor-mode cfgate-inline-mode
  "Ask cfgate for an inline suggestion whenever typing pauses.
The suggestion shows after point; TAB accepts it, any other command
removes it."
  :lighter (:eval (cfgate-mode-line))
  (if cfgate-inline-mode
      (add-hook 'post-command-hook #'cfgate--inline-post-command nil t)
    (remove-hook 'post-command-hook #'cfgate--inline-post-command t)
    (when (timerp cfgate--idle-timer)
      (cancel-timer cfgate--idle-timer))
    (cfgate-dismiss-suggestion)))

(provide 'cfgate)
;;; cfgate.el ends here
