-- eval/create's computeResourceConf as given (eval/detail shows it); NULL for a task
-- created before it was kept, shown as the SDK's own {vmType: 1, vmNumber: 8}.
ALTER TABLE qianfan_evals ADD COLUMN compute_conf BLOB;
