--- What the daemon said on stderr before it ended, for the error the user sees.
local M = {}

--- The last line the daemon (or its `serve --shared` relay) wrote to stderr since
--- `since` (a log timestamp), or nil. Neovim's LSP client copies a server's stderr into
--- its log (`vim.lsp.get_log_path()`), one inspected string per chunk; a line of the
--- relay's own ("cfgate: ...") is preferred over the daemon's log lines.
function M.last_line(exe, since)
  local f = io.open(vim.lsp.get_log_path(), "rb")
  if not f then
    return nil
  end
  local size = f:seek("end")
  f:seek("set", math.max(0, size - 32768))
  local tail = f:read("*a") or ""
  f:close()
  local last, relay
  local tag = "\t" .. vim.inspect(exe) .. "\t\"stderr\"\t"
  for line in tail:gmatch("[^\n]+") do
    local stamp = line:match("^%[%a+%]%[([^%]]+)%]")
    local at = line:find(tag, 1, true)
    if stamp and stamp >= since and at then
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
