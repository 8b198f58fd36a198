--- :CfgateModels: the models the gateway offers, asked of the daemon (`cfgate/models`),
--- the current model first. The plugin keeps no list of its own: only the gateway knows
--- which models this account can use, and the daemon caches its answer for 10 minutes.
local client = require("cfgate.client")
local config = require("cfgate.config")

local M = {}

--- The daemon lists a Workers AI model in the compat endpoint's spelling
--- (`workers-ai/@cf/...`) while settings usually say `@cf/...`: both name one model.
local function canonical(id)
  if type(id) ~= "string" then
    return id
  end
  return (id:gsub("^workers%-ai/(@cf/)", "%1"))
end

function M.same(a, b)
  return canonical(a) == canonical(b)
end

local function price(n)
  return type(n) == "number" and ("$%g"):format(n) or "?"
end

--- "owner, 24000 tokens context, tools, $0.29 in / $2.25 out per M tokens": what the
--- gateway says about a model (a field it does not give is left out).
function M.details(model)
  local parts = {}
  if type(model.owned_by) == "string" and model.owned_by ~= "" then
    table.insert(parts, model.owned_by)
  end
  if type(model.context_window) == "number" then
    table.insert(parts, ("%d tokens context"):format(model.context_window))
  end
  if model.function_calling == true then
    table.insert(parts, "tools")
  end
  if type(model.cost_in) == "number" or type(model.cost_out) == "number" then
    table.insert(parts, ("%s in / %s out per M tokens"):format(price(model.cost_in), price(model.cost_out)))
  end
  return table.concat(parts, ", ")
end

--- The picker's items: the current model first (listed or not), then the daemon's list in
--- its order. Each item is a model table of the `cfgate/models` result ({ id, owned_by,
--- ... }), `current = true` on the current one.
function M.items(models, current)
  local items = {}
  local found = nil
  for _, m in ipairs(type(models) == "table" and models or {}) do
    if type(m) == "table" and type(m.id) == "string" then
      if current and not found and M.same(m.id, current) then
        found = vim.tbl_extend("force", m, { current = true })
      else
        table.insert(items, m)
      end
    end
  end
  if current then
    table.insert(items, 1, found or { id = current, current = true })
  end
  return items
end

function M.format_item(item)
  local text = item.id
  if item.current then
    text = text .. "  (current)"
  end
  local details = M.details(item)
  if details ~= "" then
    text = text .. "  — " .. details
  end
  return text
end

local last_ids = {} -- the ids of the last list the daemon gave, for :CfgateModels <Tab>

local function remember(models)
  last_ids = {}
  for _, m in ipairs(models) do
    if type(m) == "table" and type(m.id) == "string" then
      table.insert(last_ids, m.id)
    end
  end
end

--- Ids for the command line's completion: the list last fetched, else asked now (the
--- daemon answers from its cache when it has one); none when the list cannot be had.
function M.ids()
  if #last_ids == 0 then
    local result = client.request_sync("cfgate/models", vim.empty_dict(), 5000)
    if type(result) == "table" and type(result.models) == "table" then
      remember(result.models)
    end
  end
  return last_ids
end

--- Asks the daemon for the current model and the gateway's list, then lets the user pick
--- with vim.ui.select; on_choice(id) sets it. A failed list is shown as its error and hint.
function M.pick(on_choice)
  client.request("cfgate/status", vim.empty_dict(), {
    on_result = function(status)
      local current = type(status) == "table" and type(status.model) == "string" and status.model
        or config.get().settings.model
      client.request("cfgate/models", vim.empty_dict(), {
        on_result = function(result)
          local models = type(result) == "table" and type(result.models) == "table" and result.models or {}
          remember(models)
          vim.ui.select(M.items(models, current), {
            prompt = "cfgate model",
            kind = "cfgate_model",
            format_item = M.format_item,
          }, function(choice)
            if choice and not choice.current then
              on_choice(choice.id)
            end
          end)
        end,
      })
    end,
  })
end

return M
