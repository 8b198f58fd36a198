--- What the daemon said on stderr before it ended, for the error the user sees.
local M = {}

--- Where Neovim's LSP log ends now: what a daemon started now writes comes after it.
function M.offset()
  local f = io.open(vim.lsp.get_log_path(), "rb")
  if not f then
    return 0
  end
  local size = f:seek("end")
  f:close()
  return size
end

--- The last line the daemon (or its `serve --shared` relay) wrote to stderr after byte
--- `since` of the log (see `offset`), or nil. Neovim's LSP client copies a server's
--- stderr into its log (`vim.lsp.get_log_path()`), one inspected string per chunk; a line
--- of the relay's own ("cfgate: ...") is preferred over the daemon's log lines. A byte
--- offset, not the log's timestamps: those are whole seconds, and a daemon that ended in
--- the same second as this one must not lend it its last words.
function M.last_line(exe, since)
  local f = io.open(vim.lsp.get_log_path(), "rb")
  if not f then
    return nil
  end
  local size = f:seek("end")
  f:seek("set", math.max(since or 0, size - 32768))
  local tail = f:read("*a") or ""
  f:close()
  local last, relay
  local tag = "\t" .. vim.inspect(exe) .. "\t\"stderr\"\t"
  for line in tail:gmatch("[^\n]+") do
    local at = line:find(tag, 1, true)
    if at then
      local literal = line:sub(at + #tag)
      local chunk = literal:match('^".*"$') and load("return " .. literal, "stderr", "t", {})
      local ok, text = pcall(chunk or error)
      if ok and type(text) == "string" then
        for l in text:gmatch("[^\n]+") do
          l = vim.trim(l)
          if l ~= "" then
            last = l
            if l:find("^cfgate: ") then
              relay = l:gsub("^cfgate: ", "")
            end
          end
        end
      end
    end
  end
  return relay or last
end

return M
