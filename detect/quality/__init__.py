"""Dataset quality: diversity (LPIPS), SSIM/PSNR/FID/KID/IS, their feature models, correlation with detection."""
