-- A TOTP code works once, also across restarts: the last accepted time step is kept with the user.
-- AlterTable
ALTER TABLE "User" ADD COLUMN "totpLastStep" INTEGER;
