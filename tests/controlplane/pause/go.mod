module llmbudget.local/pause

go 1.25
